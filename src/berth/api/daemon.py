"""berthd: owns the engine, the state and the kernel; serves the Docker Engine API on a unix socket.

Run in the foreground (``berthd``, e.g. under systemd) or through ``berth daemon start``. SIGTERM and
SIGINT stop it cleanly: running containers keep running (their monitors are separate processes) and
are re-adopted by the next berthd.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from berth.config import Paths


def _already_running(paths: Paths) -> int | None:
    try:
        pid = int(paths.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"berth" in f.read():
                return pid
    except OSError:
        pass
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="berthd", description="berth daemon: Docker-style networking for containers")
    parser.add_argument("--root", help="state directory (default /var/lib/berth, env BERTH_ROOT)")
    parser.add_argument("--run-root", help="runtime directory (default /run/berth, env BERTH_RUN)")
    parser.add_argument("--cni-config-dir", default=os.environ.get("BERTH_CNI_CONFIG_DIR", "/etc/cni/net.d"),
                        help="CNI network configurations to offer as cni networks (default /etc/cni/net.d, "
                             "env BERTH_CNI_CONFIG_DIR; empty: none)")
    parser.add_argument("--log-level", default=os.environ.get("BERTH_LOG_LEVEL", "info"),
                        choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("berthd")
    if os.geteuid() != 0:
        print("berthd: must run as root (it creates network namespaces, links and nftables rules)", file=sys.stderr)
        return 1
    paths = Paths.from_env(args.root, args.run_root)
    for d in (paths.root, paths.run):
        try:
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)
        except OSError as err:  # a read-only or full filesystem: one clear line, before anything changes
            print(f"berthd: cannot use {d}: {err.strerror or err}", file=sys.stderr)
            return 1
    running = _already_running(paths)
    if running and running != os.getpid():
        print(f"berthd: already running (pid {running})", file=sys.stderr)
        return 1

    from berth.api.descriptors import raise_soft_limit
    from berth.api.http import UnixHTTPServer
    from berth.api.routes import make_router
    from berth.engine import Engine
    from berth.errors import BerthError
    from berth.kernel.host import Kernel
    from berth.runtime.images import ImageStore
    from berth.runtime.spawn import Runtime

    from pathlib import Path

    from berth.dns.server import DnsServer
    from berth.dns.table import NameTable
    from berth.dns.upstream import HostResolvConf

    host_resolv = HostResolvConf(Path("/etc/resolv.conf"))

    raise_soft_limit()
    try:
        kernel = Kernel()
        dns = DnsServer(NameTable(), host_resolv.nameservers, host_resolv.search)
        engine = Engine(paths, kernel, Runtime(paths), ImageStore(paths.images), dns=dns,
                        cni_config_dir=Path(args.cni_config_dir) if args.cni_config_dir else None)
        engine.start()
        server = UnixHTTPServer(str(paths.socket), make_router(engine), thread_done=kernel.release_thread)
    except BerthError as err:
        print(f"berthd: {err}", file=sys.stderr)
        return 1
    paths.pidfile.write_text(f"{os.getpid()}\n")

    def stop(signum: int, frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("berthd listening on %s (root %s, run %s)", paths.socket, paths.root, paths.run)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        for path in (paths.socket, paths.pidfile):
            try:
                path.unlink()
            except OSError:
                pass
        engine.close()
        kernel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
