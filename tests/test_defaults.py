"""Rules and defaults written once: the Dagster resource, the CLI and the library read the same values."""

import pytest

from resources.settings import IndexSettings
from sommelier_cli.main import build_parser
from sommelier_core import defaults
from sommelier_core.equivalence.bound import (
    ARCHITECTURE_MODES,
    BOUND_MODE_SPECS,
    BOUND_MODES,
    BoundModeSpec,
    bound_mode_spec,
)
from sommelier_core.querying.api import spec_from_arguments
from sommelier_core.querying.language import check_within


def test_index_settings_defaults_are_the_library_defaults():
    settings = IndexSettings()
    assert settings.peers == defaults.PEERS == 5
    assert settings.bound_mode == defaults.BOUND_MODE == "statistical"
    assert settings.delta == defaults.DELTA == 0.05
    assert settings.segment_epsilon == defaults.SEGMENT_EPSILON == 0.05
    assert settings.latency_repeats == defaults.LATENCY_REPEATS == 30
    assert settings.memory_batch_sizes == list(defaults.MEMORY_BATCH_SIZES) == [1, 8, 32]


def test_cli_defaults_are_the_library_defaults():
    parser = build_parser()
    query = parser.parse_args(["query", "--ref", "R"])
    assert query.refine == defaults.REFINE_BUDGET == 64
    compare = parser.parse_args(["compare", "a.onnx", "b.onnx"])
    assert (compare.bound, compare.epsilon) == (defaults.BOUND_MODE, defaults.SEGMENT_EPSILON)
    profile = parser.parse_args(["profile", "m.onnx"])
    assert (profile.device, profile.batch_size) == (defaults.DEVICE, defaults.BATCH_SIZE) == ("cpu", 1)


def test_the_mode_table_is_the_only_list_of_bound_modes():
    assert BOUND_MODES == ("off", "statistical", "arora", "custom")
    assert ARCHITECTURE_MODES == ("arora", "custom")
    assert [m for m, spec in BOUND_MODE_SPECS.items() if spec.custom_data] == ["custom"]
    parser = build_parser()
    for mode in BOUND_MODES:
        assert parser.parse_args(["compare", "a.onnx", "b.onnx", "--bound", mode]).bound == mode
    with pytest.raises(SystemExit):
        parser.parse_args(["compare", "a.onnx", "b.onnx", "--bound", "arora-ish"])


def test_a_mode_needing_custom_data_is_refused_without_it_by_the_index_settings():
    with pytest.raises(ValueError, match="bound_mode 'custom' needs bound_data"):
        IndexSettings(bound_mode="custom").checked_bound_mode()
    assert IndexSettings(bound_mode="custom", bound_data="x.npz").checked_bound_mode() == "custom"
    with pytest.raises(ValueError, match="bound_mode 'arora-ish' is not one of off, statistical, arora, custom"):
        IndexSettings(bound_mode="arora-ish").checked_bound_mode()


def test_a_new_mode_is_one_table_entry(monkeypatch):
    spec = BoundModeSpec("strict", "+ a made-up term", architecture_term=False, custom_data=True)
    monkeypatch.setitem(BOUND_MODE_SPECS, "strict", spec)
    assert bound_mode_spec("strict") is spec
    with pytest.raises(ValueError, match="bound_mode 'strict' needs bound_data"):
        IndexSettings(bound_mode="strict").checked_bound_mode()
    with pytest.raises(ValueError, match="bound mode 'nope' is not one of"):
        bound_mode_spec("nope")


@pytest.mark.parametrize("within", [-0.01, 1.5])
def test_within_outside_zero_to_one_is_one_error_for_every_face(within):
    message = f"within must be a fraction in \\[0, 1\\], got {within}"
    with pytest.raises(ValueError, match=message):
        check_within(within)
    with pytest.raises(ValueError, match=message):
        spec_from_arguments(ref="R", within=within)
    assert check_within(0.0) == 0.0 and check_within(1.0) == 1.0
