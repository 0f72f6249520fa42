"""Address management: automatic subnets from pools, per-network configuration, per-subnet allocation.

Pure: no kernel, no store, no I/O. The engine feeds in the facts (host networks, nameservers, other
networks' subnets) and records the results.
"""
