"""Model id → store directory: injective, readable, and the same as before for the ids stores already hold."""

from __future__ import annotations

import itertools

import pytest

from sommelier_core.models import ID_HASH_SEPARATOR, is_plain_id, legacy_safe_name, safe_name

# Pairs that shared one directory before `safe_name` became injective.
COLLIDING_BEFORE = [
    ("lab/col:x", "lab/col_x"),
    ("a/b__c", "a__b/c"),
    ("a/b@c", "a/b--c"),
    ("a/_x", "a_/x"),
    ("r/m:1", "r/m_1"),
]


@pytest.mark.parametrize("first, second", COLLIDING_BEFORE)
def test_ids_that_shared_a_directory_get_different_ones(first: str, second: str) -> None:
    assert legacy_safe_name(first) == legacy_safe_name(second)  # the bug this pins down
    assert safe_name(first) != safe_name(second)


def test_plain_ids_keep_the_directory_stores_already_use() -> None:
    for model_id in ("zoo-torch/cnn_w32", "zoo-tf/keras_cnn_w16", "zoo-torch/rescnn_w16_mnist8_freeze1", "x/y@1.2"):
        assert is_plain_id(model_id)
        assert safe_name(model_id) == legacy_safe_name(model_id)
    assert safe_name("zoo-torch/cnn_w32") == "zoo-torch__cnn_w32"


def test_other_ids_keep_a_readable_prefix_and_a_hash_of_the_exact_id() -> None:
    name = safe_name("lab/col:x")
    readable, digest = name.split(ID_HASH_SEPARATOR)
    assert readable == "lab__col_x" and len(digest) == 12
    assert "/" not in safe_name("reg/my model/v3") and " " not in safe_name("reg/my model/v3")


def test_no_two_ids_of_a_tricky_alphabet_share_a_directory() -> None:
    # every id of up to 4 characters over the characters that were replaced, and their neighbours
    alphabet = "a_-/@:."
    ids = {
        "".join(chars)
        for length in range(1, 5)
        for chars in itertools.product(alphabet, repeat=length)
    }
    names = {}
    for model_id in ids:
        name = safe_name(model_id)
        assert names.setdefault(name, model_id) == model_id, (model_id, names[name])
        assert "/" not in name and name not in (".", "..")
