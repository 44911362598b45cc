"""The input shapes a model is profiled at (paper §5.3): symbolic dimensions fixed, and the resolution it runs at.

Static costs, memory, measured latency and operator profiles run a model at the same input shapes: a
symbolic leading dimension is the batch size, any other symbolic dimension comes from `input_shapes`
(`resolve_input_shapes`). A model exported with symbolic spatial dimensions runs at any resolution
(`shapes_at_resolution`); `profiled_shapes` is the one place the pipeline decides which it is profiled at.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import onnx

from sommelier_core.errors import SommelierError


class UnprofilableModel(SommelierError, ValueError):
    """A model whose tensor shapes cannot be fixed or inferred, so its static cost cannot be computed."""


Shape = tuple[int, ...]
HOW = " (IndexSettings.input_shapes, or `--input-shape NAME=D1,D2,…` on the command line)"
"""Where a user sets input shapes, as errors that ask for them say."""


def resolve_input_shapes(
    declared: Mapping[str, Sequence[int | None] | None],
    batch_size: int,
    input_shapes: Mapping[str, Sequence[int]],
    label: str,
) -> dict[str, Shape]:
    """Concrete shapes of the graph inputs (declared dims, None where symbolic).

    `input_shapes` entries are taken as they are; otherwise static dims are kept and a symbolic leading dim is
    `batch_size`. A batch size other than 1 that no input can take is an error rather than a wrong record.
    """
    unknown = set(input_shapes) - set(declared)
    if unknown:
        raise UnprofilableModel(f"{label}: input_shapes names {sorted(unknown)}, which are not graph inputs")
    shapes: dict[str, Shape] = {}
    batch_filled = bool(input_shapes)
    for name, dims in declared.items():
        if name in input_shapes:
            shapes[name] = tuple(int(d) for d in input_shapes[name])
            if dims is not None and len(dims) != len(shapes[name]):
                raise UnprofilableModel(
                    f"{label}: input {name!r} has rank {len(dims)}, input_shapes gives {list(shapes[name])}"
                )
            continue
        if dims is None:
            raise UnprofilableModel(f"{label}: input {name!r} declares no shape; give it in input_shapes{HOW}")
        for axis, dim in enumerate(dims[1:], start=1):
            if dim is None:
                raise UnprofilableModel(
                    f"{label}: input {name!r} has a symbolic dimension at axis {axis}; give its shape in "
                    f"input_shapes{HOW}"
                )
        if dims and dims[0] is None:
            batch_filled = True
            shapes[name] = (batch_size, *dims[1:])
        else:
            shapes[name] = tuple(dims)
    if batch_size != 1 and not batch_filled:
        raise UnprofilableModel(
            f"{label}: no input has a symbolic batch dimension, cannot use batch_size={batch_size}; "
            f"export the model with a dynamic batch dimension or give the shapes in input_shapes{HOW}"
        )
    return shapes


def shapes_at_resolution(model: onnx.ModelProto, resolution: int) -> dict[str, tuple[int, ...]]:
    """Input shapes (batch 1) with every symbolic non-batch dimension set to `resolution`.

    What `memory_profile` and `sommelier profile --resolution` run a dynamic-resolution model at; the
    caller replaces the leading 1 by its batch size. Raises `UnprofilableModel` when no input has a
    symbolic spatial dimension (the model runs at its own resolution only).
    """
    initializers = {init.name for init in model.graph.initializer}
    shapes: dict[str, tuple[int, ...]] = {}
    found = False
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        dims = vi.type.tensor_type.shape.dim
        shape = [1]
        for dim in list(dims)[1:]:
            if dim.HasField("dim_value"):
                shape.append(dim.dim_value)
            else:
                shape.append(resolution)
                found = True
        shapes[vi.name] = tuple(shape)
    if not found:
        raise UnprofilableModel(
            f"model {model.graph.name or '<unnamed>'!r}: its inputs have no symbolic spatial dimension; "
            f"it runs at its own resolution only, not {resolution}"
        )
    return shapes


def has_dynamic_resolution(model: onnx.ModelProto) -> bool:
    """Whether an input has a symbolic non-batch dimension: the model runs at any resolution `memory_profile`
    and `shapes_at_resolution` give it (an image model exported with dynamic H and W)."""
    initializers = {init.name for init in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        if any(not dim.HasField("dim_value") for dim in list(vi.type.tensor_type.shape.dim)[1:]):
            return True
    return False


@dataclass(frozen=True)
class ProfiledShapes:
    """The input shapes a model is profiled at — static costs, memory, latency and operator profiles alike."""

    shapes: Mapping[str, tuple[int, ...]] | None
    """Input name → shape, batch dim as declared (1 where symbolic), for a model with symbolic spatial dims;
    None for a model with concrete ones, profiled at its own shapes."""
    resolution: int | None
    """The square spatial size of those shapes (`native_resolution`): what a query's `RESOLUTION` matches.
    None when the input has no square spatial size."""
    dynamic: bool
    """Whether the model has symbolic spatial dims (`has_dynamic_resolution`): it runs at other resolutions too."""
    symbolic_batch: frozenset[str] = frozenset()
    """Inputs whose batch dim is symbolic: `at_batch` sets it; a declared one is kept."""
    label: str = ""
    """How errors name the model (its id)."""

    def at_batch(self, batch_size: int) -> dict[str, tuple[int, ...]] | None:
        """The `input_shapes` for `static_profile`, `measure_latency` and `profile_operators` at a batch size
        (None: the model's own shapes, its symbolic batch dim set by those functions)."""
        if self.shapes is None:
            return None
        fixed = {name: shape[0] for name, shape in self.shapes.items() if name not in self.symbolic_batch}
        if any(batch != batch_size for batch in fixed.values()):
            raise UnprofilableModel(
                f"{self.label}: inputs {fixed} have a fixed batch size; cannot profile them at batch_size={batch_size}"
            )
        return {
            name: (batch_size, *shape[1:]) if name in self.symbolic_batch else tuple(shape)
            for name, shape in self.shapes.items()
        }


def profiled_shapes(
    model: onnx.ModelProto,
    resolution: int = 0,
    validation_shape: Callable[[], Sequence[int]] | None = None,
    model_id: str = "",
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> ProfiledShapes:
    """The input shapes the exec-spec profiles a model at: the one place the pipeline decides them.

    A model whose inputs have concrete non-batch dims is profiled at them (`resolution` does not apply: it
    runs at its own only). `input_shapes` (input name → full shape, batch first; the exec-spec's `input_shapes`)
    come first when they name every input: any shape, non-square included; a dim that contradicts a concrete
    declared one is an error. One exported with symbolic spatial dims (dynamic H, W) is profiled at `resolution`
    (H = W, or L of a 1-D signal; `shapes_at_resolution`) when it is positive, else at the shape of the
    validation inputs it is compared on — `validation_shape()` (batch dim excluded; called only then, since
    choosing the validation set can fail for models that never need it) — so its profile describes the
    model as it was evaluated. Raises `UnprofilableModel` naming the model (`model_id`, else the graph's name)
    when neither gives the shapes.
    """
    label = model_id or f"model {model.graph.name or '<unnamed>'!r}"
    if not has_dynamic_resolution(model):
        return ProfiledShapes(None, native_resolution(model), False, label=label)
    initializers = {init.name for init in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in initializers]
    symbolic_batch = frozenset(
        vi.name
        for vi in inputs
        if vi.type.tensor_type.shape.dim and not vi.type.tensor_type.shape.dim[0].HasField("dim_value")
    )
    declared_batch = {
        vi.name: vi.type.tensor_type.shape.dim[0].dim_value
        for vi in inputs
        if vi.type.tensor_type.shape.dim and vi.name not in symbolic_batch
    }
    named = {vi.name: tuple(int(d) for d in input_shapes[vi.name]) for vi in inputs if vi.name in (input_shapes or {})}
    for vi in inputs:
        if vi.name not in named:
            continue
        dims = list(vi.type.tensor_type.shape.dim)
        given = named[vi.name]
        clash = len(dims) != len(given) or any(
            d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != g
            for d, g in list(zip(dims, given, strict=True))[1:]
        )
        if clash:
            declared = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
            raise UnprofilableModel(f"{label}: input_shapes gives {vi.name!r} {list(given)}; it declares {declared}")
    if named and len(named) == len(inputs):
        shapes = {name: (declared_batch.get(name, given[0]), *given[1:]) for name, given in named.items()}
    elif resolution > 0:
        shapes = {
            name: (declared_batch.get(name, 1), *shape[1:])
            for name, shape in shapes_at_resolution(model, resolution).items()
        }
    else:
        if validation_shape is None or len(inputs) != 1:
            raise UnprofilableModel(
                f"{label}: its inputs {[vi.name for vi in inputs]} have symbolic spatial dimensions and no "
                f"validation input shape fixes them; set the exec-spec's resolution or input_shapes{HOW}"
            )
        (vi,) = inputs
        sample = tuple(int(d) for d in validation_shape())
        dims = list(vi.type.tensor_type.shape.dim)[1:]
        fits = len(dims) == len(sample) and all(
            not d.HasField("dim_value") or d.dim_value == s for d, s in zip(dims, sample, strict=True)
        )
        if not fits:
            declared = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
            raise UnprofilableModel(
                f"{label}: input {vi.name!r} declares {declared} (batch excluded); validation inputs are {list(sample)}"
            )
        shapes = {vi.name: (declared_batch.get(vi.name, 1), *sample)}
    return ProfiledShapes(shapes, native_resolution(model, shapes), True, symbolic_batch, label)


def native_resolution(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None = None) -> int | None:
    """The square spatial size the model's inputs have (or are given in `input_shapes`): a query's `RESOLUTION`.

    H = W of a rank-4 input (NCHW, or NHWC when the last two dims differ), D = H = W of a rank-5 one and
    the length L of a rank-3 (N, C, L) signal. None when no input has a square spatial size (a feature
    vector, a non-square image) or the inputs disagree, or a dimension is still symbolic: such a model
    runs at no `RESOLUTION` a query can name.
    """
    initializers = {init.name for init in model.graph.initializer}
    sizes = set()
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        if input_shapes is not None and vi.name in input_shapes:
            dims: list[int | None] = [int(d) for d in input_shapes[vi.name]]
        else:
            dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        size = _spatial_size(dims)
        if size is not None:
            sizes.add(size)
    return sizes.pop() if len(sizes) == 1 else None


def _spatial_size(dims: Sequence[int | None]) -> int | None:
    if any(d is None for d in dims[1:]):
        return None
    if len(dims) == 3:
        return dims[2]
    if len(dims) == 4:
        if dims[2] == dims[3]:
            return dims[2]
        return dims[1] if dims[1] == dims[2] else None  # NHWC
    if len(dims) == 5 and dims[2] == dims[3] == dims[4]:
        return dims[2]
    return None
