"""The query language: grammar, units, errors, and one plan for the string and the keyword faces."""

from __future__ import annotations

import json

import pytest

from sommelier_cli.main import main as cli_main
from sommelier_core.errors import UnknownMetric, UnknownModel
from sommelier_core.querying.api import load_engine, query, run_query, spec_from_arguments
from sommelier_core.querying.language import (
    AllOf,
    AnyOf,
    Condition,
    OrderBy,
    QueryError,
    QuerySyntaxError,
    UnknownUnit,
    parse_query,
)
from sommelier_core.querying.plan import compile_query
from sommelier_core.querying.tasks import TaskRegistry, UnknownTask, load_task_registry
from sommelier_core.querying.utilities import register_utility, unregister_utility
from tests.test_query import _index

DESIGN_EXAMPLE = """FIND 3 MODELS LIKE 'zoo/resnet-w64' WITHIN 5%
WHERE memory <= 80% AND flops <= 50% AND latency@cpu < 30 ms
ORDER BY similarity"""


def test_the_design_example_parses_into_the_expected_spec():
    spec = parse_query(DESIGN_EXAMPLE)
    assert spec.reference == "zoo/resnet-w64" and spec.task is None
    assert spec.within == pytest.approx(0.05) and spec.limit == 3
    assert spec.where == AllOf(
        (
            Condition("memory_bytes", "<=", 0.8, relative=True),
            Condition("flops", "<=", 0.5, relative=True),
            Condition("latency_ms", "<", 30.0, device="cpu"),
        )
    )
    assert spec.order == OrderBy("similarity")


@pytest.mark.parametrize(
    ("text", "metric", "value"),
    [
        ("params < 5M", "params", 5e6),
        ("params < 50K", "params", 5e4),
        ("flops <= 2 GFLOPs", "flops", 2e9),
        ("flops <= 300MFLOPs", "flops", 3e8),
        ("macs < 1.5 GMACs", "macs", 1.5e9),
        ("memory < 1 MiB", "memory_bytes", 2**20),
        ("memory < 2 MB", "memory_bytes", 2e6),
        ("weights < 512 KiB", "weight_bytes", 512 * 1024),
        ("latency < 1 s", "latency_ms", 1000.0),
        ("latency < 250 us", "latency_ms", 0.25),
        ("latency < 3", "latency_ms", 3.0),
    ],
)
def test_absolute_values_are_converted_to_base_units(text, metric, value):
    condition = parse_query(f"FIND MODELS WHERE {text}").where
    assert condition.metric == metric and not condition.relative
    assert condition.value == pytest.approx(value)


def test_and_binds_tighter_than_or_and_parentheses_regroup():
    a, b, c = (Condition("params", "<", 1.0), Condition("flops", "<", 2.0), Condition("macs", "<", 3.0))
    assert parse_query("find models where params < 1 or flops < 2 and macs < 3").where == AnyOf((a, AllOf((b, c))))
    assert parse_query("FIND MODELS WHERE (params < 1 OR flops < 2) AND macs < 3").where == AllOf((AnyOf((a, b)), c))


def test_task_exec_spec_order_and_limit():
    spec = parse_query(
        "FIND MODELS FOR TASK image-classification ON DEVICE cpu BATCH SIZE 4 ORDER BY latency DESC LIMIT 2"
    )
    assert (spec.task, spec.device, spec.batch_size, spec.limit) == ("image-classification", "cpu", 4, 2)
    assert spec.order == OrderBy("latency", None, True) and spec.within == pytest.approx(0.05)


@pytest.mark.parametrize(
    "text",
    [
        "FIND MODELS LIKE 'R' ON cpu BATCH 8 RESOLUTION 320",
        "FIND MODELS LIKE 'R' on device cpu resolution 320 batch size 8",
        "FIND MODELS LIKE 'R' RESOLUTION 320 WHERE params < 3 BATCH 8",
        "FIND MODELS LIKE 'R' WHERE params < 3 ON cpu RESOLUTION 320 BATCH 8 LIMIT 2",
    ],
)
def test_resolution_joins_the_exec_spec_in_any_order_with_batch(text):
    spec = parse_query(text)
    assert (spec.device, spec.batch_size, spec.resolution) == ("cpu", 8, 320)
    assert parse_query("FIND MODELS RESOLUTION 224").resolution == 224
    assert parse_query("FIND MODELS LIKE 'R'").resolution is None


def test_a_non_positive_or_repeated_resolution_is_an_error_naming_its_position():
    with pytest.raises(QueryError, match="RESOLUTION must be a positive size in pixels at line 1, column 24"):
        parse_query("FIND MODELS RESOLUTION 0")
    with pytest.raises(QueryError, match="the resolution is given twice at line 1, column 46"):
        parse_query("FIND MODELS RESOLUTION 32 BATCH 2 RESOLUTION 64")
    with pytest.raises(QueryError, match="the resolution is given twice at line 2, column 12"):
        parse_query("FIND MODELS RESOLUTION 32 WHERE params < 3\nRESOLUTION 32")
    with pytest.raises(QueryError, match="the batch size is given twice at line 1, column 27"):
        parse_query("FIND MODELS BATCH 2 BATCH 4")
    with pytest.raises(QuerySyntaxError, match="found '.5'"):
        parse_query("FIND MODELS RESOLUTION 22.5")
    with pytest.raises(QuerySyntaxError, match="expected a whole number"):
        parse_query("FIND MODELS RESOLUTION")


def test_syntax_errors_name_line_column_and_what_was_expected():
    with pytest.raises(QuerySyntaxError) as err:
        parse_query("FIND MODELS LIKE zoo WITHIN 5%")
    assert (err.value.line, err.value.column) == (1, 18)
    assert "line 1, column 18" in str(err.value) and "quoted model id" in str(err.value)
    with pytest.raises(QuerySyntaxError) as err:
        parse_query("FIND 3 MODELS LIKE 'x'\nWHERE params < 3 AND )")
    assert err.value.line == 2 and err.value.column == 22 and "(" in err.value.expected
    with pytest.raises(QuerySyntaxError, match="expected a number"):
        parse_query("FIND MODELS LIKE 'x' WITHIN")


def test_unknown_metric_unit_and_misplaced_device_are_clear_errors():
    with pytest.raises(UnknownMetric, match="unknown metric 'beauty' at line 1, column 19"):
        parse_query("FIND MODELS WHERE beauty < 3")
    with pytest.raises(UnknownUnit, match="unit 'GB' does not apply to latency_ms"):
        parse_query("FIND MODELS WHERE latency < 3 GB")
    with pytest.raises(UnknownUnit, match="unit 'GFLOPs' does not apply to params"):
        parse_query("FIND MODELS WHERE params < 3 GFLOPs")
    with pytest.raises(QueryError, match="only latency takes @device"):
        parse_query("FIND MODELS WHERE params@cpu < 3")
    with pytest.raises(QueryError, match="disagree"):
        parse_query("FIND 3 MODELS LIKE 'R' LIMIT 5")


def test_string_and_keyword_faces_compile_to_the_same_plan_and_answer():
    engine = load_engine(index=_index())
    text = "FIND 2 MODELS LIKE 'R' WITHIN 30% WHERE memory <= 80% AND latency@cpu <= 0.6 ms ORDER BY similarity"
    from_text = compile_query(parse_query(text), engine)
    from_kwargs = compile_query(spec_from_arguments(ref="R", within=0.3, memory=0.8, latency_ms=0.6, limit=2), engine)
    assert from_text.predicate == from_kwargs.predicate
    assert (from_text.within, from_text.reference_pos, from_text.limit) == (
        from_kwargs.within,
        from_kwargs.reference_pos,
        from_kwargs.limit,
    )
    assert run_query(text, engine=engine).hits == query("R", 0.3, memory=0.8, latency_ms=0.6, limit=2, engine=engine)
    assert [h.model_id for h in run_query(text, engine=engine).hits] == ["A", "C"]


def test_explain_counts_what_each_stage_kept():
    result = run_query("FIND MODELS LIKE 'R' WITHIN 5% WHERE flops <= 50%", index=_index())
    stages = {s.name: (s.considered, s.kept) for s in result.stages}
    assert stages == {"reference": (4, 1), "semantic": (3, 2), "resource": (2, 1), "select": (1, 1)}
    assert "flops <= 50% (= 1,000)" in result.explain()


def test_or_and_absolute_predicates_and_resource_only_queries():
    idx = _index()
    hits = run_query("FIND MODELS LIKE 'R' WITHIN 30% WHERE params < 200 OR flops >= 1800", index=idx).hits
    assert [h.model_id for h in hits] == ["B", "C"]
    alone = run_query("FIND MODELS WHERE params <= 500 ORDER BY params", index=idx).hits
    assert [h.model_id for h in alone] == ["C", "A"]
    assert {(h.lower_bound, h.upper_bound, h.provenance) for h in alone} == {(0.0, 1.0, "none")}
    with pytest.raises(QueryError, match="relative to a reference"):
        run_query("FIND MODELS WHERE params <= 50%", index=idx)


def test_tasks_resolve_through_a_registry():
    idx = _index()
    registry = TaskRegistry({"toy": "R"})
    hits = run_query("FIND MODELS FOR TASK toy WITHIN 5%", index=idx, tasks=registry).hits
    assert [h.model_id for h in hits] == ["B", "A"]
    assert query(task="toy", within=0.05, index=idx, tasks=registry) == hits
    with pytest.raises(UnknownTask, match="registered tasks: toy"):
        run_query("FIND MODELS FOR TASK speech WITHIN 5%", index=idx, tasks=registry)
    assert load_task_registry().resolve("image-classification") == "zoo-torch/cnn_w32"


def test_tasks_json_under_the_store_overrides_the_builtin_default(tmp_path):
    (tmp_path / "tasks.json").write_text(json.dumps({"image-classification": "R"}))
    assert load_task_registry(tmp_path).resolve("Image-Classification") == "R"


def test_registered_utility_orders_hits_best_first():
    register_utility("leanest", lambda hit: -hit.profile.params)
    try:
        hits = run_query("FIND MODELS LIKE 'R' WITHIN 30% ORDER BY leanest", index=_index()).hits
        assert [h.model_id for h in hits] == ["C", "A", "B"]
    finally:
        unregister_utility("leanest")
    with pytest.raises(UnknownMetric, match="cannot order by 'leanest'"):
        run_query("FIND MODELS LIKE 'R' WITHIN 30% ORDER BY leanest", index=_index())


def test_unknown_models_devices_and_batch_sizes_are_errors():
    idx = _index()
    with pytest.raises(UnknownModel, match="'RR' is not in the index; did you mean"):
        run_query("FIND MODELS LIKE 'RR'", index=idx)
    with pytest.raises(UnknownMetric, match="device 'tpu' has no profiles"):
        run_query("FIND MODELS LIKE 'R' ON tpu", index=idx)
    with pytest.raises(UnknownMetric, match="device 'gpu' has no profiles"):
        run_query("FIND MODELS LIKE 'R' WHERE latency@gpu < 1 ms", index=idx)
    with pytest.raises(UnknownMetric, match="no profiles at batch size 8"):
        run_query("FIND MODELS LIKE 'R' BATCH 8", index=idx)


@pytest.fixture
def toy_store(tmp_path, monkeypatch):
    idx = _index()
    (tmp_path / "index").mkdir()
    idx.semantic.write_parquet(tmp_path / "index" / "semantic_index.parquet")
    idx.resource.write_parquet(tmp_path / "index" / "resource_index.parquet")
    monkeypatch.setenv("SOMMELIER_HOME", str(tmp_path))
    return tmp_path


def test_cli_text_and_flag_forms_print_identical_json(toy_store, capsys):
    assert cli_main(["query", "--ref", "R", "--within", "30%", "--memory", "80%", "--json"]) == 0
    flags = json.loads(capsys.readouterr().out)
    assert cli_main(["query", "FIND MODELS LIKE 'R' WITHIN 30% WHERE memory <= 80%", "--json"]) == 0
    text = json.loads(capsys.readouterr().out)
    assert flags == text and set(flags) == {"reference", "hits"}
    assert [h["model_id"] for h in flags["hits"]] == ["A", "C"]


def test_cli_explain_and_syntax_error(toy_store, capsys):
    assert cli_main(["query", "FIND MODELS LIKE 'R' WITHIN 5% WHERE flops <= 50%", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "semantic" in out and "[3 → 2]" in out and "[2 → 1]" in out
    assert cli_main(["query", "FIND MODELS LIKE R"]) == 2
    assert "line 1, column 18" in capsys.readouterr().err
    assert cli_main(["query", "FIND MODELS LIKE 'R'", "--ref", "R"]) == 2


@pytest.mark.parametrize(
    "flags,text",
    [
        (["--batch-size", "1"], "FIND MODELS LIKE 'R' WITHIN 30% BATCH 1"),
        (["--batch-size", "8"], "FIND MODELS LIKE 'R' WITHIN 30% BATCH 8"),
        (["--resolution", "8"], "FIND MODELS LIKE 'R' WITHIN 30% RESOLUTION 8"),
    ],
)
def test_cli_flag_form_takes_the_exec_spec_as_the_text_does(toy_store, capsys, flags, text):
    code = cli_main(["query", "--ref", "R", "--within", "30%", *flags, "--json"])
    from_flags = capsys.readouterr()
    assert cli_main(["query", text, "--json"]) == code
    from_text = capsys.readouterr()
    assert (from_flags.out, from_flags.err) == (from_text.out, from_text.err)
    assert (from_flags.out if code == 0 else from_flags.err).strip()


def test_cli_flag_form_refuses_a_non_positive_batch_or_resolution(toy_store, capsys):
    for flag in ("--batch-size", "--resolution"):
        with pytest.raises(SystemExit):
            cli_main(["query", "--ref", "R", flag, "0"])
        assert "expected a whole number ≥ 1" in capsys.readouterr().err
