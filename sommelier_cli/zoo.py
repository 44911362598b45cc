"""`sommelier zoo build`: generate the built-in model zoo; `sommelier zoo pretrained`: real pretrained models from PyPI
packages and their int8/fp16 variants, as ONNX folders."""

from __future__ import annotations

import argparse

from sommelier_cli.arguments import output_dir, writing
from sommelier_core import defaults
from sommelier_core.settings import zoo_dir


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `zoo build` and `zoo pretrained`."""
    zoo = sub.add_parser("zoo", help="the built-in model zoo").add_subparsers(dest="zoo_command", required=True)
    build = zoo.add_parser("build", help="generate the built-in model zoo (offline, seeded)")
    build.add_argument("--out", type=output_dir, help="output directory (default: <store>/zoo)")
    build.add_argument("--small", action="store_true", help="about 8 models, for tests")
    build.add_argument("--seed", type=int, default=defaults.SEED)
    build.set_defaults(func=cmd_zoo_build)
    pretrained = zoo.add_parser(
        "pretrained",
        help="real pretrained models shipped in PyPI packages, with int8 dynamic, int8 QDQ and fp16 variants",
    )
    pretrained.add_argument("out", type=output_dir, help="where to write one ONNX folder and one .npz per family")
    pretrained.add_argument("--samples", type=int, default=256, help="validation inputs per family (default 256)")
    pretrained.add_argument("--seed", type=int, default=defaults.SEED)
    pretrained.set_defaults(func=cmd_zoo_pretrained)


def cmd_zoo_build(args: argparse.Namespace) -> int:
    """Generate the built-in model zoo."""
    import logging

    from sommelier_core.zoo import build_zoo

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = args.out or zoo_dir()
    with writing(out, "--out"):
        out.mkdir(parents=True, exist_ok=True)  # a directory that cannot be made fails here, before any training
    manifest = build_zoo(out, small=args.small, seed=args.seed)
    print(f"Built {len(manifest.models)} models in {out}")
    return 0


def cmd_zoo_pretrained(args: argparse.Namespace) -> int:
    """Write the real pretrained models and their variants (`sommelier_core.zoo.pretrained`) under `out`."""
    from sommelier_core.zoo.pretrained import build_pretrained_repository

    with writing(args.out, "OUT"):
        args.out.mkdir(parents=True, exist_ok=True)
    repository = build_pretrained_repository(args.out, samples=args.samples, seed=args.seed)
    for family, folder in repository.folders.items():
        names = ", ".join(repository.models[family])
        print(f"{folder}: {names} (validation: {repository.validation[family].name})")
    return 0
