"""The query language (paper §5.1, Fig. 7; design §6): a lark grammar parsed into a typed AST.

    FIND 3 MODELS LIKE 'zoo-torch/cnn_w32' WITHIN 5%
    ON cpu BATCH 1 RESOLUTION 224
    WHERE memory <= 80% AND (flops <= 50% OR params < 50K) AND latency@cpu < 30 ms
    ORDER BY similarity LIMIT 3

The parser only builds a `QuerySpec`; nothing here reads an index. Resolving the reference (a task
name → its default model) and checking the model and the devices against an index is `querying.plan`'s
job, running the filters `querying.execution`'s, so the Python keyword API (`sommelier_core.query`) and
this language compile to the same plan. Errors name the line, the column and what was expected.

Hostile values stop here, for both faces: a `QuerySpec` (and each `Condition`) refuses non-finite or
out-of-range numbers when it is built, and a WHERE clause nested more than `MAX_NESTING` AND/OR groups
deep is refused before anything recurses over it.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from functools import lru_cache

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from sommelier_core import defaults
from sommelier_core.errors import InvalidValue, SommelierError, UnknownMetric

NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_.:\-]*"
"""What the language takes as a name (a metric, a unit, a task or a device): a device name must be one."""
MAX_NESTING = 100
"""Deepest nesting of AND/OR groups a WHERE clause may have (deeper ones would exhaust the recursion the parse
tree's transformer, the planner and the filters use; no real query comes close)."""
MAX_WHOLE_NUMBER = 2**63 - 1
"""Largest whole number a query may write (a count, LIMIT, BATCH, RESOLUTION)."""

GRAMMAR = r"""
?start: query

query: FIND count? MODELS source? within? exec_spec? where? exec_spec? order? limit?

count: INT
source: LIKE STRING              -> like
      | FOR TASK NAME            -> for_task
within: WITHIN quantity
exec_spec: ON DEVICE? NAME setting*
         | setting+
?setting: batch | resolution
batch: BATCH SIZE? INT
resolution: RESOLUTION INT
where: WHERE disjunction

?disjunction: conjunction (OR conjunction)*
?conjunction: atom (AND atom)*
?atom: "(" disjunction ")"
     | condition
condition: metric CMP quantity
metric: NAME ("@" NAME)?
quantity: NUMBER PERCENT         -> percent
        | NUMBER NAME?           -> absolute

order: ORDER BY metric DIRECTION?
limit: LIMIT INT

FIND.2: /find\b/i
MODELS.2: /models?\b/i
LIKE.2: /like\b/i
FOR.2: /for\b/i
TASK.2: /task\b/i
WITHIN.2: /within\b/i
ON.2: /on\b/i
DEVICE.2: /device\b/i
BATCH.2: /batch\b/i
SIZE.2: /size\b/i
RESOLUTION.2: /resolution\b/i
WHERE.2: /where\b/i
AND.2: /and\b/i
OR.2: /or\b/i
ORDER.2: /order\b/i
BY.2: /by\b/i
LIMIT.2: /limit\b/i
DIRECTION.2: /(asc|desc)\b/i

CMP: "<=" | ">=" | "<" | ">" | "="
PERCENT: "%"
STRING: /'[^'\n]*'/ | /"[^"\n]*"/
NAME: /@NAME_PATTERN@/
NUMBER: /\d+(\.\d*)?([eE][+-]?\d+)?/ | /\.\d+([eE][+-]?\d+)?/
INT: /\d+/

COMMENT: /--[^\n]*/
%import common.WS
%ignore WS
%ignore COMMENT
""".replace("@NAME_PATTERN@", NAME_PATTERN)

# What a person calls each terminal in a "expected …" message.
_TERMINAL_WORDS: dict[str, str] = {
    "FIND": "FIND",
    "MODELS": "MODELS",
    "LIKE": "LIKE",
    "FOR": "FOR TASK",
    "TASK": "TASK",
    "WITHIN": "WITHIN",
    "ON": "ON",
    "DEVICE": "DEVICE",
    "BATCH": "BATCH",
    "SIZE": "SIZE",
    "RESOLUTION": "RESOLUTION",
    "WHERE": "WHERE",
    "AND": "AND",
    "OR": "OR",
    "ORDER": "ORDER BY",
    "BY": "BY",
    "LIMIT": "LIMIT",
    "DIRECTION": "ASC or DESC",
    "CMP": "a comparison (<, <=, >, >=, =)",
    "PERCENT": "%",
    "STRING": "a quoted model id like 'zoo-torch/cnn_w32'",
    "NAME": "a name (metric, unit, device or task)",
    "NUMBER": "a number",
    "INT": "a whole number",
    "LPAR": "(",
    "RPAR": ")",
    "AT": "@",
    "$END": "the end of the query",
}

# Metric names in the language (and keyword API) → resource index columns.
METRIC_ALIASES: dict[str, str] = {
    "params": "params",
    "parameters": "params",
    "macs": "macs",
    "flops": "flops",
    "memory": "memory_bytes",
    "memory_bytes": "memory_bytes",
    "weights": "weight_bytes",
    "weight_bytes": "weight_bytes",
    "activations": "peak_activation_bytes",
    "peak_activation_bytes": "peak_activation_bytes",
    "latency": "latency_ms",
    "latency_ms": "latency_ms",
}
COUNT_METRICS = frozenset({"params", "macs", "flops"})
BYTE_METRICS = frozenset({"memory_bytes", "weight_bytes", "peak_activation_bytes"})
TIME_METRICS = frozenset({"latency_ms"})
SIMILARITY = "similarity"
DEFAULT_WITHIN = defaults.WITHIN
"""The equivalence threshold of a query that names a reference (or a task) without WITHIN."""
DEFAULT_DEVICE = defaults.DEVICE
"""The device of a query's latency figures and budgets when it names none."""

_COUNT_PREFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "B": 1e9, "T": 1e12}
_BYTE_UNITS = {
    "b": 1.0,
    "kb": 1e3,
    "mb": 1e6,
    "gb": 1e9,
    "kib": 1024.0,
    "mib": 1024.0**2,
    "gib": 1024.0**3,
}
_TIME_UNITS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3}


class QuerySyntaxError(SommelierError):
    """The query text does not follow the grammar; names the line, column and what was expected."""

    def __init__(self, message: str, line: int, column: int, expected: tuple[str, ...]) -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.expected = expected


class QueryError(SommelierError):
    """A well-formed query that asks for something impossible (conflicting clauses, bad values)."""


class UnknownUnit(UnknownMetric):
    """A unit that does not apply to the metric it follows."""


@dataclass(frozen=True)
class Condition:
    """One resource predicate: `metric op value`, the value absolute (base unit) or relative.

    Base units: counts for params/MACs/FLOPs, bytes for memory, milliseconds for latency.
    A relative value is a fraction of the reference's own figure (`80%` → 0.8).
    """

    metric: str
    op: str
    value: float
    relative: bool = False
    device: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.value, numbers.Real) or not math.isfinite(self.value):
            raise InvalidValue(f"condition on {self.metric}: value {self.value!r}; expected a finite number")

    def describe(self) -> str:
        """The condition as the language writes it."""
        name = f"{self.metric}@{self.device}" if self.device else self.metric
        if self.relative:
            shown = f"{self.value * 100:g}%"
        else:
            shown = format_number(self.value) + (" ms" if self.metric in TIME_METRICS else "")
        return f"{name} {self.op} {shown}"


@dataclass(frozen=True)
class AllOf:
    """Every term holds (AND)."""

    terms: tuple[Predicate, ...]


@dataclass(frozen=True)
class AnyOf:
    """At least one term holds (OR)."""

    terms: tuple[Predicate, ...]


Predicate = Condition | AllOf | AnyOf


@dataclass(frozen=True)
class OrderBy:
    """Final ranking: `similarity` (upper bound), a metric (optionally on a device) or a registered utility."""

    key: str = SIMILARITY
    device: str | None = None
    descending: bool | None = None  # None: the key's natural direction


@dataclass(frozen=True)
class QuerySpec:
    """A parsed query, before it is checked against an index.

    `reference` and `task` are exclusive; with neither, only absolute resource predicates apply.
    `within` is None when the query has no semantic predicate. `batch_size` and `resolution` (H = W of
    the input, in pixels) are the exec-spec the resource predicates are evaluated at; None: the
    index's default batch and each model's own resolution.
    """

    reference: str | None = None
    task: str | None = None
    within: float | None = None
    where: Predicate | None = None
    device: str = DEFAULT_DEVICE
    batch_size: int | None = None
    resolution: int | None = None
    order: OrderBy = OrderBy()
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.within is not None:
            check_within(self.within)
        if self.limit is not None and not _whole_at_least(self.limit, 0):
            raise InvalidValue(f"limit must be a whole number ≥ 0, got {self.limit!r}")
        for name in ("batch_size", "resolution"):
            value = getattr(self, name)
            if value is not None and not _whole_at_least(value, 1):
                raise InvalidValue(f"{name} must be a positive size, got {value!r}")
        _check_nesting(predicate_depth(self.where), InvalidValue)


def _whole_at_least(value: object, least: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and least <= value <= MAX_WHOLE_NUMBER


def _check_nesting(depth: int, error: type[SommelierError]) -> None:
    if depth > MAX_NESTING:
        raise error(f"the WHERE clause is nested too deeply ({depth} AND/OR levels, max {MAX_NESTING})")


def predicate_depth(predicate: Predicate | None) -> int:
    """How many AND/OR groups deep a predicate tree nests (0: none or a single condition); counted without
    recursion, so a hostile tree cannot exhaust the stack here."""
    deepest, stack = 0, [(predicate, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, AllOf | AnyOf):
            deepest = max(deepest, depth + 1)
            stack.extend((term, depth + 1) for term in node.terms)
    return deepest


def check_device_name(name: str) -> str:
    """`name` itself when a query can name it as a device (`ON name`, `latency@name`): a name of the language
    the grammar takes there, at most 64 characters — so it is also a safe file name. Else `InvalidValue`."""
    fits = isinstance(name, str) and len(name) <= 64 and re.fullmatch(NAME_PATTERN, name) is not None
    if fits:
        try:
            spec = parse_query(f"FIND MODELS ON {name} WHERE latency@{name} < 1 ms")
            fits = spec.device == name and isinstance(spec.where, Condition) and spec.where.device == name
        except SommelierError:
            fits = False  # a keyword the grammar cannot take there (DEVICE)
    if not fits:
        raise InvalidValue(
            f"device name {name!r}: expected a name a query can use — a letter or _ then letters, digits, _ . : -, "
            "at most 64 characters, not the keyword DEVICE — such as 'edge-cpu'"
        )
    return name


def format_number(value: float) -> str:
    """A threshold for people: thousands separated, no exponent for counts and bytes."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.6g}"


def describe_predicate(predicate: Predicate | None) -> str:
    """A predicate tree written back in the language (parenthesised where needed)."""
    if predicate is None:
        return "true"
    if isinstance(predicate, Condition):
        return predicate.describe()
    joiner = " AND " if isinstance(predicate, AllOf) else " OR "
    parts = []
    for term in predicate.terms:
        text = describe_predicate(term)
        parts.append(f"({text})" if not isinstance(term, Condition) else text)
    return joiner.join(parts)


def canonical_metric(name: str, where: str = "") -> str:
    """The resource column a metric name means; a clear error listing the known names otherwise."""
    column = METRIC_ALIASES.get(name.lower())
    if column is None:
        known = ", ".join(sorted({"params", "macs", "flops", "memory", "weights", "activations", "latency"}))
        raise UnknownMetric(f"unknown metric {name!r}{where}; expected one of {known}")
    return column


def unit_scale(metric: str, unit: str | None, where: str = "") -> float:
    """Multiplier turning a value in `unit` into the metric's base unit (count, bytes, ms)."""
    if unit is None or unit == "":
        return 1.0
    if metric in TIME_METRICS:
        scale = _TIME_UNITS.get(unit.lower())
        expected = "ns, us, ms, s"
    elif metric in BYTE_METRICS:
        scale = _BYTE_UNITS.get(unit.lower())
        expected = "B, KB, MB, GB, KiB, MiB, GiB"
    else:
        scale = None
        match = re.fullmatch(r"([kKMGBT]?)(flops|macs|params)?", unit, flags=re.IGNORECASE)
        if match and match.group(1) in _COUNT_PREFIX:
            suffix = (match.group(2) or "").lower()
            fits = suffix == "" or (suffix == "flops" and metric == "flops") or (suffix == "macs" and metric == "macs")
            fits = fits or (suffix == "params" and metric == "params")
            # A lone unit "B"/"b" is ambiguous (billion or bytes) only for byte metrics; for counts it is billion.
            scale = _COUNT_PREFIX[match.group(1)] if fits else None
        expected = {"flops": "K, M, G, T, FLOPs, GFLOPs …", "macs": "K, M, G, T, MACs, GMACs …"}.get(
            metric, "K, M, G, T"
        )
    if scale is None:
        raise UnknownUnit(f"unit {unit!r} does not apply to {metric}{where}; expected {expected}")
    return scale


def _where(token: Token) -> str:
    return f" at line {token.line}, column {token.column}"


def _finite(token: Token) -> float:
    """A NUMBER token as a float; one too large for a float (`1e999`) is an error at its position."""
    value = float(token)
    if not math.isfinite(value):
        raise QueryError(f"number {_shown(token)}{_where(token)} is too large; expected a finite number")
    return value


def _whole(token: Token, what: str) -> int:
    """An INT token as an int, at most `MAX_WHOLE_NUMBER`; else an error naming the clause and position."""
    digits = str(token).lstrip("0") or "0"
    if len(digits) > len(str(MAX_WHOLE_NUMBER)) or int(digits) > MAX_WHOLE_NUMBER:
        raise QueryError(f"{what} {_shown(token)}{_where(token)} is too large; expected at most {MAX_WHOLE_NUMBER}")
    return int(digits)


def _shown(token: Token) -> str:
    text = str(token)
    return text if len(text) <= 24 else f"{text[:20]}… ({len(text)} characters)"


@v_args(inline=True)
class _ToSpec(Transformer):
    """Parse tree → `QuerySpec`; values converted to base units here so the AST is unit-free."""

    def count(self, token: Token) -> int:
        return _whole(token, "the model count")

    def like(self, _kw: Token, text: Token) -> tuple[str, str]:
        return ("reference", str(text)[1:-1])

    def for_task(self, _for: Token, _task: Token, name: Token) -> tuple[str, str]:
        return ("task", str(name))

    def within(self, _kw: Token, quantity: tuple) -> tuple[str, float]:
        value, unit, relative, token = quantity
        if not relative and unit is not None:
            raise QueryError(f"WITHIN takes a percentage or a fraction, not {unit!r}{_where(token)}")
        fraction = value
        if not 0 <= fraction <= 1:
            hint = f" (did you mean {value:g}%?)" if not relative else ""
            raise QueryError(f"WITHIN must be between 0% and 100%{_where(token)}, got {fraction:.4g}{hint}")
        return ("within", fraction)

    def percent(self, number: Token, _pct: Token) -> tuple:
        return (_finite(number) / 100, None, True, number)

    def absolute(self, number: Token, unit: Token | None = None) -> tuple:
        return (_finite(number), str(unit) if unit is not None else None, False, number)

    def batch(self, _kw: Token, *rest: Token) -> tuple[str, int, Token]:
        size = _whole(rest[-1], "BATCH")
        if size <= 0:
            raise QueryError(f"BATCH must be a positive size{_where(rest[-1])}")
        return ("batch_size", size, rest[-1])

    def resolution(self, _kw: Token, value: Token) -> tuple[str, int, Token]:
        size = _whole(value, "RESOLUTION")
        if size <= 0:
            raise QueryError(f"RESOLUTION must be a positive size in pixels{_where(value)}")
        return ("resolution", size, value)

    def exec_spec(self, *parts) -> tuple[str, tuple[str | None, list[tuple[str, int, Token]]]]:
        device, settings = None, []
        for part in parts:
            if isinstance(part, tuple):
                settings.append(part)
            elif isinstance(part, Token) and part.type == "NAME":
                device = str(part)
        return ("exec", (device, settings))

    def where(self, _kw: Token, predicate: Predicate) -> tuple[str, Predicate]:
        return ("where", predicate)

    def metric(self, name: Token, device: Token | None = None) -> tuple[str, str | None, Token]:
        # Kept as written: WHERE canonicalises it; ORDER BY may also name `similarity` or a utility.
        return (str(name), str(device) if device is not None else None, name)

    def condition(self, metric: tuple, op: Token, quantity: tuple) -> Condition:
        name, device, name_token = metric
        column = canonical_metric(name, _where(name_token))
        if device is not None and column not in TIME_METRICS:
            raise QueryError(f"{name} is device-independent; only latency takes @device{_where(name_token)}")
        value, unit, relative, token = quantity
        if relative:
            return Condition(column, str(op), value, relative=True, device=device)
        scale = unit_scale(column, unit, _where(token))
        if not math.isfinite(value * scale):
            raise QueryError(f"{_shown(token)} {unit}{_where(token)} is too large; expected a finite number")
        return Condition(column, str(op), value * scale, relative=False, device=device)

    def conjunction(self, *items) -> AllOf:
        return AllOf(tuple(i for i in items if not isinstance(i, Token)))

    def disjunction(self, *items) -> AnyOf:
        return AnyOf(tuple(i for i in items if not isinstance(i, Token)))

    def order(self, _order: Token, _by: Token, metric: tuple, direction: Token | None = None):
        return ("order", metric, direction)

    def limit(self, _kw: Token, value: Token) -> tuple[str, int]:
        return ("limit", _whole(value, "LIMIT"))

    def query(self, *parts) -> QuerySpec:
        fields: dict = {}
        count = None
        for part in parts:
            if isinstance(part, Token):
                continue
            if isinstance(part, int):
                count = part
                continue
            kind = part[0]
            if kind in ("reference", "task"):
                fields[kind] = part[1]
            elif kind == "within":
                fields["within"] = part[1]
            elif kind == "exec":
                device, settings = part[1]
                if device is not None:
                    if "device" in fields:
                        raise QueryError("the device is given twice (ON … before and after WHERE)")
                    fields["device"] = device
                for name, value, token in settings:
                    if name in fields:
                        what = "batch size" if name == "batch_size" else "resolution"
                        raise QueryError(f"the {what} is given twice{_where(token)}")
                    fields[name] = value
            elif kind == "where":
                fields["where"] = part[1]
            elif kind == "order":
                fields["order"] = _order_from(part[1], part[2])
            elif kind == "limit":
                fields["limit"] = part[1]
        if count is not None:
            if "limit" in fields and fields["limit"] != count:
                raise QueryError(f"FIND {count} MODELS and LIMIT {fields['limit']} disagree; give the count once")
            fields["limit"] = count
        if ("reference" in fields or "task" in fields) and "within" not in fields:
            fields["within"] = DEFAULT_WITHIN
        return QuerySpec(**fields)


def check_within(within: float) -> float:
    """`within` itself when it is a fraction in [0, 1] (an equivalence threshold); else `InvalidValue` (a
    `ValueError`) naming it — NaN and ±inf included."""
    if not isinstance(within, numbers.Real) or not 0 <= within <= 1:
        raise InvalidValue(f"within must be a fraction in [0, 1], got {within!r}")
    return within


def _order_from(metric: tuple, direction: Token | None) -> OrderBy:
    """ORDER BY's key as written (`similarity`, a metric alias or a utility name); the plan resolves it."""
    name, device, _token = metric
    descending = None if direction is None else str(direction).lower() == "desc"
    return OrderBy(name, device, descending)


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", lexer="contextual", propagate_positions=False, maybe_placeholders=False)


def _expected_words(expected: set[str] | frozenset[str] | list[str]) -> tuple[str, ...]:
    return tuple(sorted({_TERMINAL_WORDS.get(t, t) for t in expected}))


def parse_query(text: str) -> QuerySpec:
    """Parse a query string into a `QuerySpec` (units converted, percentages as fractions).

    A metric name in WHERE that the resource index does not hold, a unit that does not fit its
    metric, or a malformed query raise errors naming the line and column.
    """
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    _check_nesting(_tree_depth(tree), QueryError)
    try:
        return _ToSpec().transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, SommelierError):
            raise exc.orig_exc from None
        raise


def _tree_depth(tree: Tree) -> int:
    """How many AND/OR groups deep a parse tree nests, counted without recursion (the transformer recurses)."""
    deepest, stack = 0, [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Tree):
            depth += node.data in ("conjunction", "disjunction")
            deepest = max(deepest, depth)
            stack.extend((child, depth) for child in node.children)
    return deepest


def _syntax_error(text: str, exc: UnexpectedInput) -> QuerySyntaxError:
    line, column = getattr(exc, "line", 1) or 1, getattr(exc, "column", 1) or 1
    if isinstance(exc, UnexpectedToken):
        expected = _expected_words(exc.accepts or exc.expected)
        found = "the end of the query" if exc.token.type == "$END" else repr(str(exc.token))
        if exc.token.type == "$END":
            line, column = _end_position(text)
    elif isinstance(exc, UnexpectedCharacters):
        expected = _expected_words(exc.allowed or set())
        found = repr(text[exc.pos_in_stream]) if exc.pos_in_stream < len(text) else "the end"
    elif isinstance(exc, UnexpectedEOF):
        expected = _expected_words(exc.expected)
        found = "the end of the query"
        line, column = _end_position(text)
    else:  # pragma: no cover - lark has no other UnexpectedInput subclasses
        expected, found = (), "input"
    snippet = text.splitlines()[line - 1] if text.splitlines() and line - 1 < len(text.splitlines()) else text
    pointer = " " * (column - 1) + "^"
    message = (
        f"syntax error at line {line}, column {column}: found {found}; expected "
        f"{', '.join(expected) if expected else 'something else'}\n  {snippet}\n  {pointer}"
    )
    return QuerySyntaxError(message, line, column, expected)


def _end_position(text: str) -> tuple[int, int]:
    lines = text.rstrip().splitlines() or [""]
    return len(lines), len(lines[-1]) + 1
