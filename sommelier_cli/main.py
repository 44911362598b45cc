"""The `sommelier` command line: build the zoo, index, query, profile, compare, open the UI.

One module per command group, each adding its subcommands with `add_commands(subparsers)`; this module
only assembles them (`COMMAND_GROUPS`, in `--help` order) and runs the chosen command.

`--json` output is stable: tooling depends on its keys. Every failure a user can cause — a bad flag
(argparse), a domain error (`SommelierError`, `InvalidValue` for numbers, names and paths), a missing
file — goes to stderr as one line, `error: …`, naming the model, field or file and what was expected,
with exit status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import NoReturn

from sommelier_cli import bench, compare, data, device, index, plot, profile, query, repo, serve, store, ui, verify, zoo
from sommelier_core.errors import SommelierError
from sommelier_core.settings import store_root

COMMAND_GROUPS = (zoo, repo, data, index, verify, store, query, plot, serve, bench, profile, device, compare, ui)
"""The command-group modules, in the order `sommelier --help` lists their commands."""


class CommandLineParser(argparse.ArgumentParser):
    """argparse with its errors as the CLI's other errors: one line `error: sommelier CMD: …`, exit status 2.
    Subcommand parsers are of this class too (`add_subparsers` makes them of the parent's class)."""

    def error(self, message: str) -> NoReturn:
        """Print one line naming the command and what was wrong, then exit with status 2."""
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = CommandLineParser(
        prog="sommelier",
        description=f"Index model repositories by functional equivalence and resource profile. Store: {store_root()}",
    )
    parser.add_argument(
        "--config", metavar="PATH", help="project configuration (default: $SOMMELIER_CONFIG or <store>/sommelier.yaml)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; errors a user can cause become one clear line on stderr and exit status 2 (a bad flag
    exits there from argparse with `SystemExit(2)`)."""
    args = build_parser().parse_args(argv)
    if args.config:  # through the environment, so `sommelier index` and `sommelier ui` subprocesses read it too
        from sommelier_core.ingest.project_config import CONFIG_ENV

        os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    warnings.formatwarning = _warning_line
    try:
        return args.func(args)
    except (SommelierError, FileNotFoundError) as exc:
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return 2


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """A warning (e.g. a damaged stored file a query skipped) as one `warning: …` line, not Python's two-line form."""
    return f"warning: {_one_line(str(message))}\n"


def _one_line(message: str) -> str:
    """A message on one line: a query syntax error's snippet is joined to it with `|`, its caret dropped (the
    message names the line and column)."""
    return " | ".join(line.strip() for line in message.splitlines() if line.strip(" ^"))


if __name__ == "__main__":
    sys.exit(main())
