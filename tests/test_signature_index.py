"""The index of I/O signatures the `peers` stage draws from: groups by signature in the order models joined, label
vocabularies that must agree, models no longer registered left out, and the records of a store indexed before it
read once to fill it."""

from __future__ import annotations

import multiprocessing

import numpy as np

from assets.peers import index_missing_signatures, signature_entry
from sommelier_core.equivalence.outputs import ModelOutputs
from sommelier_core.stages import MODEL_OUTPUTS
from sommelier_core.store import ModelStore
from sommelier_core.store.signature_index import SignatureEntry, SignatureIndex


def _outputs(
    model_id: str, dataset: str = "digits", labels: tuple[str, ...] | None = None, path: str = ""
) -> ModelOutputs:
    return ModelOutputs(
        model_id=model_id,
        dataset=dataset,
        n=597,
        path=path,
        signature_key="in:f32[1,8,8]|out:f32[10]",
        task="classification",
        labels=labels,
        accuracy=None,
    )


def test_a_group_lists_its_models_in_the_order_they_joined_and_a_rerun_keeps_the_place(tmp_path):
    index = SignatureIndex(tmp_path)
    index.add([SignatureEntry("r/b", "S"), SignatureEntry("r/a", "S"), SignatureEntry("r/x", "T")])
    index.add([SignatureEntry("r/c", "S"), SignatureEntry("r/b", "S")])  # r/b again: same signature, same place
    assert [m.model_id for m in index.members("S")] == ["r/b", "r/a", "r/c"]
    assert [m.model_id for m in index.members("T")] == ["r/x"]
    index.add([SignatureEntry("r/b", "T")])  # republished with other outputs: it moves, joining T last
    assert [m.model_id for m in index.members("S")] == ["r/a", "r/c"]
    assert [m.model_id for m in index.members("T")] == ["r/x", "r/b"]
    index.remove(["r/x"])
    assert index.model_ids() == {"r/a", "r/b", "r/c"}
    assert SignatureIndex(tmp_path).entry("r/c") == SignatureEntry("r/c", "S")  # persisted under the store root


def test_compatible_models_share_the_signature_and_agree_on_labels_or_declare_none(tmp_path):
    index = SignatureIndex(tmp_path)
    cats = signature_entry(_outputs("r/cats", labels=("cat", "dog")))
    index.add(
        [
            cats,
            signature_entry(_outputs("r/same", labels=("cat", "dog"))),
            signature_entry(_outputs("r/other", labels=("car", "bus"))),
            signature_entry(_outputs("r/unlabelled")),
            signature_entry(_outputs("r/mnist1d", dataset="mnist1d")),
        ]
    )
    assert index.compatible(cats) == ["r/cats", "r/same", "r/unlabelled"]
    assert index.compatible(cats, registered=["r/cats", "r/unlabelled"]) == ["r/cats", "r/unlabelled"]
    # what the index groups is what `ModelOutputs.comparable_with` compares
    assert _outputs("r/a").comparable_with(_outputs("r/b")) and signature_entry(_outputs("r/a")).signature == (
        signature_entry(_outputs("r/b")).signature
    )
    assert not _outputs("r/a").comparable_with(_outputs("r/b", dataset="mnist1d"))


def test_a_store_indexed_before_the_signature_index_is_read_once_to_fill_it(tmp_path):
    store = ModelStore(tmp_path)
    for model_id in ("r/a", "r/b"):
        path = store.save_outputs(model_id, np.zeros((597, 10), np.float32))
        store.save_record(MODEL_OUTPUTS.name, model_id, _outputs(model_id, path=str(path)))
    index = SignatureIndex(tmp_path)
    assert index_missing_signatures(store, index, ["r/a", "r/b", "r/not-run-yet"]) == 2
    assert [m.model_id for m in index.members(signature_entry(_outputs("r/a")).signature)] == ["r/a", "r/b"]
    assert index_missing_signatures(store, index, ["r/a", "r/b", "r/not-run-yet"]) == 0  # nothing read again


def _add_many(root: str, prefix: str) -> None:
    index = SignatureIndex(root)
    for i in range(20):
        index.add([SignatureEntry(f"{prefix}/{i}", "S")])


def test_processes_adding_at_once_give_every_model_its_own_place(tmp_path):
    workers = [multiprocessing.Process(target=_add_many, args=(str(tmp_path), p)) for p in ("a", "b", "c")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    members = SignatureIndex(tmp_path).members("S")
    assert len(members) == 60 and len({m.model_id for m in members}) == 60
