"""`sommelier device list | export | import`: devices with measured profiles and devices known by a table."""

from __future__ import annotations

import argparse
from pathlib import Path

from sommelier_cli.arguments import device_name, output_file, writing
from sommelier_core.settings import store_root
from sommelier_core.stages import OPERATOR_TABLE, table_file


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `device list`, `device export` and `device import`."""
    dev = sub.add_parser("device", help="devices: list them, export a profiled device's operator table, import one")
    devsub = dev.add_subparsers(dest="device_command", required=True)
    dl = devsub.add_parser("list", help="devices with measured profiles and devices known by an imported table")
    dl.set_defaults(func=cmd_device_list)
    de = devsub.add_parser("export", help="write a profiled device's operator latency table to a parquet file")
    de.add_argument("device", type=device_name)
    de.add_argument("--out", type=output_file, required=True, help="the parquet file to write")
    de.set_defaults(func=cmd_device_export)
    di = devsub.add_parser("import", help="describe a device by an operator table measured elsewhere")
    di.add_argument("table", help="a parquet file written by `sommelier device export`")
    di.add_argument(
        "--name", type=device_name, required=True, help="the device name queries use (latency@NAME, --device NAME)"
    )
    di.set_defaults(func=cmd_device_import)


def cmd_device_list(args: argparse.Namespace) -> int:
    """Profiled devices (an operator table built from measurements) and imported ones (a table alone)."""
    from sommelier_core.store import ModelStore

    store = ModelStore(store_root())
    profiled = sorted(p.stem for p in (store.index_dir / OPERATOR_TABLE.name).glob("*.parquet"))
    imported = sorted(p.stem for p in store.devices_dir.glob("*.parquet"))
    for name in profiled:
        print(f"{name:<20} measured (operator table {store.index_dir / OPERATOR_TABLE.name / table_file(name)})")
    for name in imported:
        print(f"{name:<20} estimated from imported table {store.devices_dir / (name + '.parquet')}")
    if not profiled and not imported:
        print("no devices yet: run `sommelier index` (profiles every device present) or `sommelier device import`")
    return 0


def cmd_device_export(args: argparse.Namespace) -> int:
    """Copy a profiled device's operator table out, to import it on another machine."""
    from sommelier_core.profiling import OperatorLatencyTable, UnknownOperatorTable
    from sommelier_core.store import ModelStore

    source = ModelStore(store_root()).index_dir / OPERATOR_TABLE.name / table_file(args.device)
    if not source.exists():
        raise UnknownOperatorTable(f"device {args.device!r} has no operator table at {source}; run `sommelier index`")
    table = OperatorLatencyTable.read(source)
    with writing(args.out, "--out"):
        table.write(args.out)
    print(f"wrote the {args.device} operator table to {args.out}")
    return 0


def cmd_device_import(args: argparse.Namespace) -> int:
    """Describe a device by an imported operator table; the next `sommelier index` adds its estimates."""
    from sommelier_core.profiling import import_operator_table
    from sommelier_core.store import ModelStore

    store = ModelStore(store_root())
    with writing(store.devices_dir, "the store's devices directory"):
        table = import_operator_table(Path(args.table), args.name, store.devices_dir)
    print(
        f"device {table.device}: {table.entries.height} operator keys imported to {store.devices_dir}; "
        "run `sommelier index` to add its estimated latencies to the resource index"
    )
    return 0
