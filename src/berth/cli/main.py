"""Entry point of ``berth``: global options, the command table, and one-line error reporting.

Every failure ends as one line on stderr and an exit status (1; 125 for a refused ``run``, or docker's
flag-error status 125 for bad arguments); no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from berth.cli import containers, daemon, images, networks, system
from berth.cli.context import Context
from berth.cli.errors import CLIError

FLAG_ERROR = 125


class Parser(argparse.ArgumentParser):
    """argparse with docker's status for flag errors (125) instead of argparse's 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(FLAG_ERROR, f"{self.prog}: {message}\nSee '{self.prog} --help'.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="berth", description="Docker's network model for containers: a client of berthd.")
    parser.add_argument("-H", "--host", help="Daemon socket to connect to (unix:///path; env BERTH_HOST)")
    parser.add_argument("--root", help="berthd state directory (env BERTH_ROOT)")
    parser.add_argument("--run-root", help="berthd runtime directory, holding berth.sock (env BERTH_RUN)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in (containers, images, networks, system, daemon):
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    ctx = Context(args.host, getattr(args, "daemon_root", None) or args.root,
                  getattr(args, "daemon_run", None) or args.run_root)
    try:
        return args.func(ctx, args)
    except CLIError as err:
        ctx.err(err.message + "\n")
        return err.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. ``| head``): nothing left to say
        return 1
    except OSError as err:
        ctx.err(f"berth: {err.strerror or err}\n")
        return 1
    finally:
        ctx.close()


if __name__ == "__main__":
    sys.exit(main())
