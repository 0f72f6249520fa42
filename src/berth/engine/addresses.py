"""Per-network address bookkeeping: one allocator per subnet, rebuilt from the store at start-up."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_address
from typing import Sequence

from berth.errors import AddressInUse, InvalidParameter
from berth.ipam.allocator import SubnetAllocator
from berth.ipam.config import SubnetConfig


class NetworkAddresses:
    """The allocators of one network, IPv4 subnets first, in configuration order."""

    def __init__(self, subnets: Sequence[SubnetConfig]) -> None:
        self.subnets = list(subnets)
        self._allocators = [
            (cfg, SubnetAllocator(cfg.subnet, cfg.ip_range, reserved=[cfg.gateway, *cfg.aux.values()]))
            for cfg in self.subnets
        ]

    def _family(self, version: int) -> list[tuple[SubnetConfig, SubnetAllocator]]:
        return [(cfg, alloc) for cfg, alloc in self._allocators if cfg.subnet.version == version]

    def gateway(self, version: int) -> IPv4Address | IPv6Address | None:
        family = self._family(version)
        return family[0][0].gateway if family else None

    def gateway_interfaces(self) -> list[IPv4Interface | IPv6Interface]:
        """The addresses the network's bridge carries: each subnet's gateway with the subnet's prefix."""
        return [
            IPv4Interface(f"{cfg.gateway}/{cfg.subnet.prefixlen}") if cfg.subnet.version == 4
            else IPv6Interface(f"{cfg.gateway}/{cfg.subnet.prefixlen}")
            for cfg in self.subnets
        ]

    def _take(self, version: int, request: str) -> IPv4Interface | IPv6Interface | None:
        family = self._family(version)
        if not family:
            return None
        if request:
            try:
                wanted = ip_address(request)
            except ValueError:
                raise InvalidParameter(f"invalid IPv{version} address: {request}") from None
            for cfg, alloc in family:
                if wanted in cfg.subnet:
                    if wanted == cfg.gateway or wanted in cfg.aux.values():
                        raise AddressInUse()
                    alloc.claim(wanted)
                    return _iface(wanted, cfg.subnet.prefixlen)
            raise InvalidParameter(f"Invalid address {wanted}: It does not belong to any of this network's subnets")
        error: Exception | None = None
        for cfg, alloc in family:
            try:
                return _iface(alloc.allocate(), cfg.subnet.prefixlen)
            except Exception as err:  # noqa: BLE001 - try the network's next subnet
                error = err
        assert error is not None
        raise error

    def allocate(self, ipv4_request: str = "", ipv6_request: str = "") -> tuple[IPv4Interface | None, IPv6Interface | None]:
        """One address per family the network has; static requests honoured. All or nothing."""
        v4 = self._take(4, ipv4_request)
        try:
            v6 = self._take(6, ipv6_request)
        except Exception:
            self.release(v4, None)
            raise
        if ipv6_request and not self._family(6):
            self.release(v4, None)
            raise InvalidParameter(f"Invalid address {ipv6_request}: It does not belong to any of this network's subnets")
        return v4, v6  # type: ignore[return-value]

    def claim(self, v4: IPv4Interface | None, v6: IPv6Interface | None) -> None:
        """Re-register addresses recorded in the store (start-up); a duplicate is a store inconsistency."""
        for iface in (v4, v6):
            if iface is not None:
                for cfg, alloc in self._family(iface.version):
                    if iface.ip in cfg.subnet:
                        alloc.claim(iface.ip)
                        break

    def release(self, v4: IPv4Interface | None, v6: IPv6Interface | None) -> None:
        for iface in (v4, v6):
            if iface is not None:
                for cfg, alloc in self._family(iface.version):
                    if iface.ip in cfg.subnet:
                        alloc.release(iface.ip)
                        break


def _iface(address: IPv4Address | IPv6Address, prefixlen: int) -> IPv4Interface | IPv6Interface:
    return IPv4Interface(f"{address}/{prefixlen}") if address.version == 4 else IPv6Interface(f"{address}/{prefixlen}")
