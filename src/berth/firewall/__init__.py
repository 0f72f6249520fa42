"""berth's nftables rules as data (libnftables JSON commands); applied by the kernel layer."""
