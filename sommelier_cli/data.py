"""`sommelier data add|list|remove`: the validation datasets of the project configuration (`sommelier.yaml`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sommelier_cli.output import print_json


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `data add`, `data list` and `data remove`."""
    data = sub.add_parser("data", help="validation datasets matched to models (sommelier.yaml)").add_subparsers(
        dest="data_command", required=True
    )
    add = data.add_parser(
        "add",
        help="configure a validation dataset",
        description="Add a validation dataset: an .npz with an array 'x' (inputs, batch first) and optional "
        "'y' (labels), or a folder of .npy arrays or images (class subfolders give labels). Each model is run "
        "on the dataset declared for its input signature, else for its task, else any whose samples fit.",
    )
    add.add_argument("name")
    add.add_argument("path", type=Path)
    add.add_argument(
        "--for",
        dest="target",
        default="",
        metavar="SIGNATURE|TASK",
        help="an input signature (float32[?,3,32,32]), a shape (3x32x32) or a task (classification, regression)",
    )
    add.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="images: resize to H x W (required)")
    add.add_argument("--channels", type=int, choices=(1, 3), help="images: 1 (grey) or 3 (RGB, the default)")
    add.add_argument("--scale", type=float, help="images: multiply pixels by this (default 1/255)")
    add.add_argument("--mean", type=float, nargs="+", help="images: per-channel mean subtracted after scaling")
    add.add_argument("--std", type=float, nargs="+", help="images: per-channel std divided by after the mean")
    add.add_argument("--layout", choices=("NCHW", "NHWC"), help="images: tensor layout (default NCHW)")
    add.set_defaults(func=cmd_data_add)
    listing = data.add_parser("list", help="the configured datasets")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_data_list)
    remove = data.add_parser("remove", help="remove a dataset from the configuration")
    remove.add_argument("name")
    remove.set_defaults(func=cmd_data_remove)


def cmd_data_add(args: argparse.Namespace) -> int:
    """Add a dataset (replacing one of the same name) after reading its sample shape, and write the file."""
    from sommelier_core.ingest.project_config import load_project_config, save_project_config
    from sommelier_core.ingest.validation import ConfiguredDataset, DatasetError

    config = load_project_config()
    if not args.path.exists():
        raise DatasetError(f"{args.path}: no such file or folder; expected an .npz or a folder of images/arrays")
    preprocessing = {
        key: value
        for key, value in (
            ("size", list(args.size) if args.size else None),
            ("channels", args.channels),
            ("scale", args.scale),
            ("mean", args.mean),
            ("std", args.std),
            ("layout", args.layout),
        )
        if value is not None
    }
    if preprocessing and not args.path.is_dir():
        raise DatasetError(f"{args.path}: preprocessing options apply to folders of images, not to an .npz")
    resolved = args.path.resolve()
    base = config.base_dir.resolve()
    written = resolved.relative_to(base) if resolved.is_relative_to(base) else resolved
    dataset = ConfiguredDataset(args.name, written, args.target, tuple(sorted(preprocessing.items())))
    shape = ConfiguredDataset(args.name, resolved, args.target, dataset.preprocessing).sample_shape()
    path = save_project_config(config.with_dataset(dataset))
    target = f" for {args.target}" if args.target else ""
    print(f"Added dataset {args.name!r} ({resolved}, samples {tuple(shape)}){target} to {path}")
    return 0


def cmd_data_list(args: argparse.Namespace) -> int:
    """Print the configured datasets."""
    from sommelier_core.ingest.project_config import load_project_config

    config = load_project_config()
    rows = [
        {"name": d.name, "path": str(d.path), "for": d.target, "preprocessing": dict(d.preprocessing)}
        for d in config.datasets
    ]
    if args.json:
        print_json({"config": str(config.path), "datasets": rows})
        return 0
    if not rows:
        print(f"No datasets configured in {config.path}: models are run on the built-in set of their input shape.")
        return 0
    print(f"Datasets in {config.path}:")
    for row in rows:
        target = f"  for {row['for']}" if row["for"] else ""
        print(f"  {row['name']}  {row['path']}{target}")
    return 0


def cmd_data_remove(args: argparse.Namespace) -> int:
    """Remove a dataset from the configuration."""
    from sommelier_core.ingest.project_config import load_project_config, save_project_config

    config = load_project_config()
    path = save_project_config(config.without_dataset(args.name))
    print(f"Removed dataset {args.name!r} from {path}")
    return 0
