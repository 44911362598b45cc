"""`sommelier verify [--json] [--repair] [--quick]`: the store's health, file by file, and its repair."""

from __future__ import annotations

import argparse

from sommelier_cli.output import print_json

HEALTHY, DAMAGED = 0, 1
"""Exit statuses: nothing damaged (unverified files from before checksums are not damage); damage found."""


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `verify`."""
    verify = sub.add_parser(
        "verify",
        help="check every stored record, artifact and index file against its checksum; exit 1 if any is damaged",
    )
    verify.add_argument("--json", action="store_true", help="the report as JSON")
    verify.add_argument(
        "--repair",
        action="store_true",
        help="remove damaged records (and records of damaged files) and damaged index files, so the next "
        "`sommelier index` writes them again",
    )
    verify.add_argument("--quick", action="store_true", help="compare file sizes only, not SHA-256 digests")
    verify.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    """Report the store's health per kind of file (ok / damaged / unverified), naming each damaged file and its
    model; with `--repair`, remove what is damaged. Exit 0 when nothing is damaged, 1 when damage was found."""
    from sommelier_core.settings import store_root
    from sommelier_core.store import ModelStore
    from sommelier_core.store.health import check_store, repair

    store = ModelStore(store_root())
    health = check_store(store, full=not args.quick)
    removed = repair(store, health) if args.repair and not health.healthy else []
    if args.json:
        print_json(health.to_data() | {"removed": [str(p) for p in removed]})
    else:
        print(render(health.to_data(), [str(p) for p in removed]))
    return HEALTHY if health.healthy else DAMAGED


def render(report: dict, removed: list[str]) -> str:
    """The report as text: a table of kinds × statuses, then each damaged file, then what was removed."""
    statuses = ("ok", "damaged", "unverified", "missing", "newer", "legacy")
    shown = [s for s in statuses if any(s in counts for counts in report["counts"].values())] or ["ok"]
    width = max([len("kind"), *(len(kind) for kind in report["counts"])])
    lines = [f"Store {report['root']}: {report['models']} models, {report['files']} files checked"]
    lines.append("  " + "kind".ljust(width) + "".join(f"{s:>12}" for s in shown))
    for kind, counts in report["counts"].items():
        lines.append("  " + kind.ljust(width) + "".join(f"{counts.get(s, 0):>12}" for s in shown))
    if report["damaged"]:
        lines.append(f"Damaged ({len(report['damaged'])}):")
        lines += [f"  {item['problem'] or item['path']}" for item in report["damaged"]]
        if removed:
            lines.append(f"Removed ({len(removed)}); run `sommelier index` to write them again:")
            lines += [f"  {path}" for path in removed]
        else:
            lines.append("Run `sommelier index` (it re-runs the stages of damaged records and rebuilds the index),")
            lines.append("or `sommelier verify --repair` to remove what is damaged first.")
    else:
        unverified = sum(counts.get("unverified", 0) for counts in report["counts"].values())
        note = f"; {unverified} unverified (written before checksums)" if unverified else ""
        lines.append(f"Healthy: nothing damaged{note}.")
    return "\n".join(lines)
