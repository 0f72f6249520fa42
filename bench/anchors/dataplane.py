"""Data plane throughput (iperf3 TCP, Gbit/s), everything inside the throwaway host.

- raw bridge: two bare namespaces on a bare Linux bridge (in a namespace of its own, so no firewall of
  berth's sees the traffic): what the kernel gives;
- berth container to container on one berth network (berth's nft forward rules in the path);
- the host to a container directly, and through a published port on 127.0.0.1 and on the gateway;
- hairpin: a container to its own published port through the gateway (DNAT back out of the port it
  came in by), against container to container.
iperf3 runs from the host's binary inside each namespace (nsenter), so only the network path differs.
Every round runs each path once, starting one path later than the round before, so no path always
follows the same one.
"""

from __future__ import annotations

import json
import shutil
import time
from typing import Callable

from anchors import Box, Samples, Skipped
from anchors.berthd import Berth

NETWORK = "dpnet"
PUBLISHED = 15201
RAW = [
    ["ip", "netns", "add", "rawhost"], ["ip", "netns", "add", "rawa"], ["ip", "netns", "add", "rawb"],
    ["ip", "-n", "rawhost", "link", "add", "rawbr", "type", "bridge"],
    ["ip", "-n", "rawhost", "link", "set", "rawbr", "up"],
]
for side, address in (("rawa", "10.88.0.2/24"), ("rawb", "10.88.0.3/24")):
    RAW += [
        ["ip", "-n", "rawhost", "link", "add", f"{side}0", "type", "veth", "peer", "name", "eth0", "netns", side],
        ["ip", "-n", "rawhost", "link", "set", f"{side}0", "master", "rawbr", "up"],
        ["ip", "-n", side, "addr", "add", address, "dev", "eth0"],
        ["ip", "-n", side, "link", "set", "eth0", "up"],
        ["ip", "-n", side, "link", "set", "lo", "up"],
    ]


class Dataplane:
    def __init__(self, box: Box, berth: Berth) -> None:
        if not shutil.which("iperf3"):
            raise Skipped("iperf3 is not installed (bench/setup.sh installs it)")
        self.box = box
        self.pidfiles: list[str] = []
        for argv in RAW:
            self.box.run(argv, check=True)
        berth.cli("network", "create", "--subnet", "10.92.0.0/24", NETWORK)
        berth.cli("run", "-d", "--name", "dpa", "--network", NETWORK, "bb", "sleep", "1000000")
        berth.cli("run", "-d", "--name", "dpb", "--network", NETWORK, "-p", f"{PUBLISHED}:5201", "bb",
                  "sleep", "1000000")
        ids = {name: berth.engine.call("GET", f"/containers/{name}/json")["Id"] for name in ("dpa", "dpb")}
        self.netns = {name: f"--net={box.run_root}/netns/{cid}" for name, cid in ids.items()}
        self.server_ip = berth.address("dpb", NETWORK)
        self.gateway = berth.engine.call("GET", f"/networks/{NETWORK}")["IPAM"]["Config"][0]["Gateway"]
        self._server(["ip", "netns", "exec", "rawb"], "raw")
        self._server(["nsenter", self.netns["dpb"]], "berth")

    def _server(self, enter: list[str], name: str) -> None:
        pidfile = f"{self.box.tmp}/iperf3-{name}.pid"
        self.box.run([*enter, "iperf3", "-s", "-D", "--pidfile", pidfile], check=True)
        self.pidfiles.append(pidfile)
        self._wait_listening(enter)

    def _wait_listening(self, enter: list[str]) -> None:
        deadline = time.monotonic() + 10
        while not self.box.run([*enter, "ss", "-Hltn", "sport = :5201"]).stdout.strip():
            if time.monotonic() > deadline:
                raise RuntimeError(f"iperf3 server in {enter} is not listening after 10 s")
            time.sleep(0.05)

    def _client(self, enter: list[str], address: str, port: int, seconds: int) -> float:
        result = self.box.run([*enter, "iperf3", "-c", address, "-p", str(port), "-t", str(seconds), "-J"],
                              timeout=seconds + 30)
        data = json.loads(result.stdout)
        if "error" in data:
            raise RuntimeError(f"iperf3 to {address}:{port}: {data['error']}")
        return data["end"]["sum_received"]["bits_per_second"] / 1e9

    def rounds(self, rounds: int, seconds: int) -> Samples:
        paths: dict[str, Callable[[], float]] = {
            "raw bridge, netns to netns": lambda: self._client(["ip", "netns", "exec", "rawa"], "10.88.0.3", 5201,
                                                               seconds),
            "berth container to container": lambda: self._client(["nsenter", self.netns["dpa"]], self.server_ip, 5201,
                                                                 seconds),
            "host to container, direct": lambda: self._client([], self.server_ip, 5201, seconds),
            "host to published port on 127.0.0.1": lambda: self._client([], "127.0.0.1", PUBLISHED, seconds),
            "host to published port on the gateway": lambda: self._client([], self.gateway, PUBLISHED, seconds),
            "hairpin: container to its own published port": lambda: self._client(
                ["nsenter", self.netns["dpb"]], self.gateway, PUBLISHED, seconds),
        }
        order = list(paths.items())
        out: Samples = {}
        for i in range(rounds):
            for label, run in order[i % len(order):] + order[:i % len(order)]:
                out.setdefault(label, []).append(run())
        return out

    def close(self) -> None:
        for pidfile in self.pidfiles:
            self.box.run(["sh", "-c", f'[ -f {pidfile} ] && kill "$(cat {pidfile})"'])
        for ns in ("rawa", "rawb", "rawhost"):
            self.box.run(["ip", "netns", "del", ns])
