"""`sommelier serve`: serve a model of the store's index over HTTP, switching to equivalent models under load.

Also runnable alone as `python -m sommelier_cli.serve …` (the serving benchmark starts servers so).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys

from sommelier_cli.arguments import device_name, parse_fraction, positive_int, positive_ms
from sommelier_core import defaults

_BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_bytes(text: str) -> int:
    """`256MiB`, `64 MB`, `1000000` → bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _BYTE_UNITS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a size like 256MiB, 64MB or 1000000 (bytes)")
    return int(float(match.group(1)) * _BYTE_UNITS[unit])


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `sommelier serve`."""
    parser.add_argument("--like", required=True, metavar="MODEL", help="the configured model (an indexed model id)")
    parser.add_argument(
        "--within",
        type=parse_fraction,
        default=defaults.WITHIN,
        help="accuracy budget: largest bound on a served model's difference from MODEL (default 5%%)",
    )
    parser.add_argument("--slo-ms", type=positive_ms, default=50.0, help="latency target per request (default 50)")
    parser.add_argument(
        "--memory-budget", type=parse_bytes, default=None, help="memory the served models may take (e.g. 256MiB)"
    )
    parser.add_argument("--fixed", action="store_true", help="serve MODEL only, never switch")
    parser.add_argument("--replicas", type=positive_int, default=1, help="workers sharing the queue (default 1)")
    parser.add_argument("--threads", type=positive_int, default=1, help="intra-op threads per worker (default 1)")
    parser.add_argument("--device", type=device_name, default="cpu")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=positive_int, default=8000)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `serve`."""
    parser = sub.add_parser("serve", help="serve a model over HTTP, switching to equivalent models under load")
    add_serve_arguments(parser)
    parser.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the service on the store's index (`SOMMELIER_HOME`) and serve until interrupted."""
    from sommelier_core.serving import InferenceService, ModelSelector, PolicyConfig, ServiceConfig
    from sommelier_core.serving.app import serve

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    selector = ModelSelector(args.like, device=args.device)
    service = InferenceService(
        selector,
        PolicyConfig(within=args.within, slo_ms=args.slo_ms, memory_budget_bytes=args.memory_budget),
        ServiceConfig(switching=not args.fixed, workers=args.replicas, threads=args.threads, device=args.device),
    )
    print(
        f"Serving {args.like} on http://{args.host}:{args.port} "
        f"({'fixed' if args.fixed else f'switching within {args.within:.1%}, target {args.slo_ms:g} ms'}, "
        f"{args.replicas} worker{'s' if args.replicas > 1 else ''})",
        flush=True,
    )
    serve(service, args.host, args.port, log_level="warning")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m sommelier_cli.serve …`: the same command without the rest of the CLI."""
    from sommelier_core.errors import SommelierError

    parser = argparse.ArgumentParser(prog="sommelier serve", description=__doc__)
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_serve(args)
    except (SommelierError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
