"""berth's demo: networks in every mode, containers talking by name, a published port, isolation shown,
in a throwaway host.

Everything runs inside a sandbox (own pid, net and mount namespaces), so the demo needs root but never
touches this machine's own networking, and leaves nothing behind.
"""

from __future__ import annotations

import shlex
import sys
import time

from berth.testing.images import busybox_rootfs_tar
from berth.testing.sandbox import Sandbox

FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end='')"
WEB = "mkdir -p /www && echo 'hello from web' > /www/index.html && exec httpd -f -p 80 -h /www"


class Demo:
    def __init__(self, box: Sandbox) -> None:
        self.box = box
        self.failures = 0

    def title(self, text: str) -> None:
        print(f"\n\033[1m== {text}\033[0m", flush=True)

    def berth(self, *args: str, expect_fail: bool = False) -> str:
        print(f"$ berth {' '.join(shlex.quote(a) for a in args)}", flush=True)
        result = self.box.berth(*args)
        out = (result.stdout + result.stderr).rstrip()
        if out:
            print("  " + out.replace("\n", "\n  "), flush=True)
        if (result.returncode != 0) != expect_fail:
            self.failures += 1
            print(f"  !! unexpected exit status {result.returncode}", flush=True)
        return result.stdout

    def host(self, *argv: str, shown: str | None = None) -> None:
        print(f"[host]$ {shown or ' '.join(argv)}", flush=True)
        result = self.box.run(list(argv))
        print("  " + (result.stdout + result.stderr).rstrip().replace("\n", "\n  "), flush=True)


def main() -> int:
    started = time.monotonic()
    with Sandbox(prefix="berth-demo-") as box:
        demo = Demo(box)
        demo.title("a throwaway host: berthd running in its own namespaces")
        box.start_berthd()
        tar = busybox_rootfs_tar(box.tmp / "bb.tar")
        demo.berth("import", str(tar), "bb")
        demo.berth("network", "ls")

        demo.title("a user-defined network; a web server; a client reaching it")
        demo.berth("network", "create", "--subnet", "10.20.0.0/24", "mynet")
        demo.berth("run", "-d", "--name", "web", "--network", "mynet", "bb", "sh", "-c", WEB)
        for _ in range(100):
            if box.berth("exec", "web", "wget", "-qO-", "http://127.0.0.1/").returncode == 0:
                break
            time.sleep(0.05)
        demo.berth("run", "--rm", "--network", "mynet", "bb", "wget", "-qO-", "http://10.20.0.2/")
        demo.berth("exec", "web", "ip", "-o", "-4", "addr", "show", "eth0")
        demo.berth("network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{.IPv4Address}}{{end}}", "mynet")

        demo.title("containers find each other by name and alias (embedded DNS on user networks)")
        demo.berth("run", "-d", "--name", "api", "--network", "mynet", "--network-alias", "backend", "bb",
                   "sleep", "600")
        demo.berth("exec", "web", "ping", "-c", "1", "api")
        demo.berth("exec", "api", "wget", "-qO-", "http://web/")
        demo.berth("exec", "web", "nslookup", "backend.")

        demo.title("a published port: kernel DNAT from the host, on its own address and on 127.0.0.1")
        demo.berth("run", "-d", "--name", "pub", "--network", "mynet", "-p", "8080:80", "bb", "sh", "-c", WEB)
        for _ in range(100):
            if box.berth("exec", "pub", "wget", "-qO-", "http://127.0.0.1/").returncode == 0:
                break
            time.sleep(0.05)
        demo.berth("port", "pub")
        demo.host(sys.executable, "-c", FETCH, "http://127.0.0.1:8080/", shown="http GET http://127.0.0.1:8080/")
        demo.berth("exec", "api", "wget", "-qO-", "http://10.20.0.1:8080/")

        demo.title("the default bridge (berth0), like docker0")
        demo.berth("run", "--rm", "bb", "ip", "-o", "-4", "addr", "show", "eth0")

        demo.title("host mode shares the host's stack; none has only lo")
        demo.berth("run", "--rm", "--network", "host", "bb", "ip", "-o", "link")
        demo.berth("run", "--rm", "--network", "none", "bb", "ip", "-o", "addr")

        demo.title("container mode: share web's namespace and reach it on 127.0.0.1")
        demo.berth("run", "--rm", "--network", "container:web", "bb", "wget", "-qO-", "http://127.0.0.1/")

        demo.title("isolation: another network cannot reach web ... until connected")
        demo.berth("network", "create", "--subnet", "10.40.0.0/24", "other")
        demo.berth("run", "-d", "--name", "client", "--network", "other", "bb", "sleep", "600")
        demo.berth("exec", "client", "ping", "-c", "1", "-W", "1", "10.20.0.2", expect_fail=True)
        demo.berth("network", "connect", "mynet", "client")
        demo.berth("exec", "client", "wget", "-qO-", "http://10.20.0.2/")
        demo.berth("network", "disconnect", "mynet", "client")

        demo.title("bad input is refused with one clear line, and nothing changes")
        demo.berth("network", "create", "--subnet", "10.20.0.128/25", "clash", expect_fail=True)
        demo.berth("network", "rm", "mynet", expect_fail=True)

        demo.title("clean up")
        demo.berth("ps", "-a")
        demo.berth("rm", "-f", "web", "client", "api", "pub")
        demo.berth("network", "prune", "-f")
        demo.host("ip", "-br", "link")
    print(f"\ndemo finished in {time.monotonic() - started:.1f}s; the throwaway host is gone"
          + ("" if not demo.failures else f"; {demo.failures} step(s) did not behave as expected"))
    return 1 if demo.failures else 0


if __name__ == "__main__":
    sys.exit(main())
