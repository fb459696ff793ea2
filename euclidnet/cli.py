"""The ``euclidnet`` command line."""

from __future__ import annotations

import argparse
import sys


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.name in (None, "selfcheck"):
        from .selfcheck import run_selfcheck

        return 0 if run_selfcheck(lmax=args.lmax) else 1
    raise SystemExit(f"unknown demo {args.name!r}; available: selfcheck")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="euclidnet", description="E(3)-equivariant neural networks: demos, training and evaluation."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run a demo (default: the O(3) core self-check)")
    demo.add_argument("name", nargs="?", choices=["selfcheck"], help="which demo (default: selfcheck)")
    demo.add_argument("--lmax", type=int, default=12, help="largest degree checked by the self-check")
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
