"""`sommelier repo add|list|remove`: the repositories of the project configuration (`sommelier.yaml`)."""

from __future__ import annotations

import argparse

from sommelier_cli.output import print_json


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `repo add`, `repo list` and `repo remove`."""
    repo = sub.add_parser("repo", help="the repositories to index (sommelier.yaml)").add_subparsers(
        dest="repo_command", required=True
    )
    add = repo.add_parser(
        "add",
        help="configure a repository",
        description="Add a repository to the project configuration. LOCATION is a folder (onnx), a Torch Hub "
        "folder or GitHub owner/repo[:ref] (torchhub), TF-Hub handles or SavedModel folders (tfhub, several "
        "allowed) or an MLflow tracking URI (mlflow). Models that run code when loaded (Torch Hub, SavedModels, "
        "MLflow pytorch/tensorflow) are indexed only from a repository added with --trust.",
    )
    add.add_argument("kind", help="torchhub, tfhub, onnx or mlflow")
    add.add_argument("name", help="the repository's name: the first segment of its models' ids")
    add.add_argument("location", nargs="+")
    add.add_argument("--trust", action="store_true", help="its models may run code when loaded (you trust it)")
    add.add_argument("--filter", default="", help="mlflow only: an MLflow filter over registered models")
    add.add_argument("--replace", action="store_true", help="replace a repository of the same name")
    add.set_defaults(func=cmd_repo_add)
    listing = repo.add_parser("list", help="the configured repositories")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_repo_list)
    remove = repo.add_parser("remove", help="remove a repository from the configuration")
    remove.add_argument("name")
    remove.set_defaults(func=cmd_repo_remove)


def cmd_repo_add(args: argparse.Namespace) -> int:
    """Add (or with --replace, replace) a repository and write the configuration."""
    from sommelier_core.ingest.project_config import (
        ProjectConfigError,
        RepositorySpec,
        load_project_config,
        save_project_config,
        written_location,
    )

    config = load_project_config()
    if args.filter and args.kind != "mlflow":
        raise ProjectConfigError(f"--filter: only mlflow repositories take a filter, not {args.kind!r}")
    if len(args.location) > 1 and args.kind != "tfhub":
        raise ProjectConfigError(f"{args.kind} takes one LOCATION (only tfhub takes several), got {args.location}")
    locations = tuple(written_location(args.kind, loc, config.base_dir) for loc in args.location)
    options = {"filter": args.filter} if args.filter else {}
    spec = RepositorySpec(args.name, args.kind, locations, args.trust, options)
    spec.connector(config.base_dir)  # a bad option or location fails here, before the file changes
    path = save_project_config(config.with_repository(spec, replace_existing=args.replace))
    trust = "trusted" if args.trust else "not trusted (models that run code when loaded are refused)"
    print(f"Added {args.kind} repository {args.name!r} ({', '.join(locations)}), {trust}, to {path}")
    return 0


def cmd_repo_list(args: argparse.Namespace) -> int:
    """Print the configured repositories (or say that the built-in zoo is indexed)."""
    from sommelier_core.ingest.project_config import load_project_config

    config = load_project_config()
    rows = [
        {"name": s.name, "kind": s.kind, "location": list(s.location), "trusted": s.trusted, **dict(s.options)}
        for s in config.repositories
    ]
    if args.json:
        print_json({"config": str(config.path), "repositories": rows, "builtin_zoo": not rows})
        return 0
    if not rows:
        print(f"No repositories configured in {config.path}: the built-in zoo is indexed (trusted: it is ours).")
        return 0
    print(f"Repositories in {config.path}:")
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        trust = "trusted" if row["trusted"] else "untrusted"
        extra = f"  filter {row['filter']!r}" if row.get("filter") else ""
        print(f"  {row['name']:<{width}}  {row['kind']:<8} {trust:<9}  {', '.join(row['location'])}{extra}")
    return 0


def cmd_repo_remove(args: argparse.Namespace) -> int:
    """Remove a repository from the configuration (its models leave the index at the next build)."""
    from sommelier_core.ingest.project_config import load_project_config, save_project_config

    config = load_project_config()
    path = save_project_config(config.without_repository(args.name))
    print(f"Removed repository {args.name!r} from {path}; its models leave the indexes at the next `sommelier index`")
    return 0
