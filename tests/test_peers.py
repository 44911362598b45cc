"""Peer sampling: seeded by model id, independent of pool order, never the model itself."""

from sommelier_core.equivalence.peers import sample_peers


def test_same_model_and_pool_give_the_same_peers_in_any_order():
    pool = [f"zoo/m{i}" for i in range(20)]
    assert sample_peers("zoo/m3", pool, seed=7) == sample_peers("zoo/m3", list(reversed(pool)), seed=7)


def test_peers_exclude_the_model_and_have_the_requested_size():
    pool = [f"zoo/m{i}" for i in range(20)]
    peers = sample_peers("zoo/m3", pool, k=5)
    assert len(peers) == 5 and "zoo/m3" not in peers and len(set(peers)) == 5


def test_different_models_or_seeds_draw_different_peers():
    pool = [f"zoo/m{i}" for i in range(40)]
    draws = {sample_peers(f"zoo/m{i}", pool, seed=0) for i in range(10)}
    assert len(draws) > 5
    assert sample_peers("zoo/m1", pool, seed=0) != sample_peers("zoo/m1", pool, seed=1)


def test_small_pool_returns_every_other_model():
    assert sample_peers("a", ["a", "b", "c"], k=5) == ("b", "c")
