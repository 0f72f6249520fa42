"""CNI in both directions: the protocol's data (types), berth as a CNI plugin (plugin: ``berth-cni``)."""
