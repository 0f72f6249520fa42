"""The only code that changes the host: netlink, nftables, namespaces and sysctls.

Everything above this package receives kernel access as an object, so unit tests can substitute the
in-memory twin in ``fake.py``.
"""
