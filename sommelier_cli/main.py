"""The `sommelier` command line: build the zoo, index, query, profile, compare, open the UI.

One module per command group, each adding its subcommands with `add_commands(subparsers)`; this module
only assembles them (`COMMAND_GROUPS`, in `--help` order) and runs the chosen command.

`--json` output is stable: tooling depends on its keys. Errors go to stderr as one line naming
the model, field or file and what was expected; the exit status is 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys

from sommelier_cli import bench, compare, device, index, profile, query, ui, zoo
from sommelier_core.errors import SommelierError
from sommelier_core.settings import store_root

COMMAND_GROUPS = (zoo, index, query, bench, profile, device, compare, ui)
"""The command-group modules, in the order `sommelier --help` lists their commands."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="sommelier",
        description=f"Index model repositories by functional equivalence and resource profile. Store: {store_root()}",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; domain errors become one clear line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SommelierError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
