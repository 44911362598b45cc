"""Choosing the models a new model is compared with (paper §5.2 insertion): random peers and group pivots.

`sample_peers` draws up to k random compatible peers, seeded by the model id. `choose_peers` adds the
group's **pivots** — its first few models, fixed for good — so that every pair of a compatible group shares
a measured neighbour: a two-hop path bound d(a,p) + d(p,b) and a one-hop lower bound |d(a,p) − d(b,p)|
through each shared pivot. Random peers alone leave a pair of a group of thousands several hops apart, and
their path bounds cannot tell which models are closest to a reference (docs/index.md, "Query quality").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from sommelier_core.defaults import PEERS as DEFAULT_PEERS
from sommelier_core.defaults import PIVOTS as DEFAULT_PIVOTS


def peer_seed(model_id: str, seed: int) -> int:
    """A seed derived from the model id, so re-running a partition picks the same peers."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{model_id}".encode()).digest()[:8], "big")


def sample_peers(model_id: str, pool: Iterable[str], k: int = DEFAULT_PEERS, seed: int = 0) -> tuple[str, ...]:
    """Up to `k` peers drawn without replacement from `pool` (the model itself excluded), seeded.

    The draw depends only on the seed, the model id and the pool's contents (not its order), so
    it is stable while the repository is unchanged.
    """
    candidates = sorted(set(pool) - {model_id})
    if len(candidates) <= k:
        return tuple(candidates)
    rng = np.random.default_rng(peer_seed(model_id, seed))
    chosen = rng.choice(len(candidates), size=k, replace=False)
    return tuple(candidates[i] for i in sorted(chosen))


def group_pivots(pool: Sequence[str], count: int = DEFAULT_PIVOTS) -> tuple[str, ...]:
    """The group's pivots: the first `count` distinct models of `pool`, which lists the group earliest first.

    Pivots are fixed once the group has `count` models, so every later model is compared with the same ones.
    """
    if count < 0:
        raise ValueError(f"pivot count must be ≥ 0, got {count}")
    return tuple(dict.fromkeys(pool))[:count]


def choose_peers(
    model_id: str,
    pool: Sequence[str],
    k: int = DEFAULT_PEERS,
    pivots: int = DEFAULT_PIVOTS,
    seed: int = 0,
) -> tuple[str, ...]:
    """The up to `k` models `model_id` is compared with: its group's pivots, then random peers for the rest.

    `pool` is the model's compatible group in the order its models joined the repository (earliest first;
    it may hold the model itself and models that joined after it). The pivots are `group_pivots(pool,
    pivots)` less the model itself (at most `k`); the other `k − pivots` are `sample_peers` over the rest of
    the pool, so they depend on the pool's contents only. With `pivots=0` this is `sample_peers`.
    """
    fixed = tuple(p for p in group_pivots(pool, pivots) if p != model_id)[:k]
    rest = set(pool) - set(group_pivots(pool, pivots))
    return fixed + sample_peers(model_id, rest, k=k - len(fixed), seed=seed)


@dataclass(frozen=True)
class PeerSample:
    """The peers a model is compared with, and how large the pool of compatible models was."""

    model_id: str
    peers: tuple[str, ...]
    pool_size: int
    seed: int
