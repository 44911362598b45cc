"""`sommelier query`: answer a query, in the query language or by flags, from the materialized index."""

from __future__ import annotations

import argparse

from sommelier_cli.arguments import non_negative_int, parse_fraction, percent, positive_int
from sommelier_cli.output import print_json
from sommelier_core import defaults
from sommelier_core.errors import SommelierError
from sommelier_core.querying.api import run_query, spec_from_arguments
from sommelier_core.querying.language import SIMILARITY, parse_query


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `query`."""
    q = sub.add_parser(
        "query",
        help="models equivalent to a reference, within resource budgets",
        description="Either a query in the language, e.g. \"FIND 3 MODELS LIKE 'zoo-torch/cnn_w32' WITHIN 5%% "
        'WHERE memory <= 80%% AND latency@cpu < 30 ms ORDER BY similarity", or --ref with flags.',
    )
    q.add_argument("text", nargs="?", help="a query in the query language (quote it)")
    q.add_argument("--ref", help="reference model id, e.g. zoo-torch/cnn_w32")
    q.add_argument("--within", type=parse_fraction, help=f"equivalence threshold (default {percent(defaults.WITHIN)})")
    q.add_argument("--memory", type=parse_fraction, help="memory budget relative to the reference, e.g. 80%%")
    q.add_argument("--flops", type=parse_fraction, help="FLOPs budget relative to the reference, e.g. 50%%")
    q.add_argument("--params", type=parse_fraction, help="parameter budget relative to the reference")
    q.add_argument("--latency-ms", type=float, help="absolute latency budget on the device (ms)")
    q.add_argument("--device", help=f"device of latency budgets and figures (default {defaults.DEVICE})")
    q.add_argument(
        "--order-by",
        choices=["similarity", "flops", "macs", "params", "memory", "latency"],
        help=f"final ranking (default {SIMILARITY})",
    )
    q.add_argument("--limit", type=non_negative_int, help="at most this many hits")
    q.add_argument("--batch-size", type=positive_int, help="exec-spec batch size (as BATCH n)")
    q.add_argument("--resolution", type=positive_int, help="exec-spec input resolution H = W (as RESOLUTION r)")
    q.add_argument("--explain", action="store_true", help="print the plan with how many models each stage kept")
    q.add_argument(
        "--refine",
        type=non_negative_int,
        default=defaults.REFINE_BUDGET,
        metavar="N",
        help="measure up to N uncertain candidate pairs from stored outputs "
        f"(default {defaults.REFINE_BUDGET}; 0: the index alone)",
    )
    q.add_argument(
        "--synthesized",
        action="store_true",
        help="also return synthesized candidates (model N with segments of M; `sommelier synthesize ID` writes one)",
    )
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_query)


def cmd_query(args: argparse.Namespace) -> int:
    """Answer a query — in the query language (positional text) or by flags — from the materialized index."""
    flag_names = (
        "ref", "within", "memory", "flops", "params", "latency_ms", "device", "order_by", "limit", "batch_size",
        "resolution",
    )  # fmt: skip
    if args.text is not None:
        flags = [f"--{name.replace('_', '-')}" for name in flag_names if getattr(args, name) is not None]
        if flags:
            raise SommelierError(f"give the query either as text or with flags, not both (also got {', '.join(flags)})")
        spec = parse_query(args.text)
    elif args.ref is not None:
        spec = spec_from_arguments(
            ref=args.ref,
            within=defaults.WITHIN if args.within is None else args.within,
            memory=args.memory,
            flops=args.flops,
            params=args.params,
            latency_ms=args.latency_ms,
            device=args.device or defaults.DEVICE,
            order_by=args.order_by or SIMILARITY,
            limit=args.limit,
            batch_size=args.batch_size,
            resolution=args.resolution,
        )
    else:
        raise SommelierError("give a query text (FIND … LIKE 'model' …) or --ref MODEL")
    result = run_query(spec, refine=args.refine, synthesized=args.synthesized)
    hits, plan = result.hits, result.plan
    if args.json:
        payload: dict = {"reference": plan.reference_id, "hits": [h.to_json() for h in hits]}
        if args.explain:
            payload["plan"] = result.explain_json()
        print_json(payload)
        return 0
    if args.explain:
        print(result.explain())
    if plan.within is not None:
        print(f"Models like {plan.reference_id} within {plan.within:.1%} on {plan.device}: {len(hits)}")
    else:
        print(f"Models on {plan.device}: {len(hits)}")
    for h in hits:
        p = h.profile
        print(
            f"  {h.model_id:<36} bound ≤ {h.upper_bound:6.2%} (≥ {h.lower_bound:5.2%}, {h.provenance:<10}) "
            f"MACs {p.macs:>9,}  memory {p.memory_bytes / 1024:8.1f} KiB  latency {p.latency_ms:6.3f} ms"
            + (" (estimated)" if p.latency_estimated else "")
        )
    return 0
