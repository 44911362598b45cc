"""Sampling the five peers a new model is compared with (paper §5.2 insertion)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from sommelier_core.defaults import PEERS as DEFAULT_PEERS


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


@dataclass(frozen=True)
class PeerSample:
    """The peers a model is compared with, and how large the pool of compatible models was."""

    model_id: str
    peers: tuple[str, ...]
    pool_size: int
    seed: int
