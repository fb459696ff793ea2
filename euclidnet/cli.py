"""The ``euclidnet`` command line."""

from __future__ import annotations

import argparse
import sys


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demos import available_demos, run_demo

    if args.list:
        for name, desc in sorted(available_demos().items()):
            print(f"{name:<12} {desc}")
        return 0
    return run_demo(args.name or "selfcheck", args.demo_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="euclidnet", description="E(3)-equivariant neural networks: demos, training and evaluation."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="run a demo (`euclidnet demo --list` lists them)",
        description="Run a demo by name; arguments after the name go to the demo (try `euclidnet demo NAME -h`).",
    )
    demo.add_argument("name", nargs="?", help="which demo (default: selfcheck)")
    demo.add_argument("demo_args", nargs=argparse.REMAINDER, help="arguments passed to the demo")
    demo.add_argument("--list", action="store_true", help="list the available demos")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
