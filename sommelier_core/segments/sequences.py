"""Operator sequences of an ONNX graph (paper §4.2, Fig. 4).

A DNN is mostly a chain of layers with a few local parallel regions (residual skips, multi-branch
blocks). The graph's *operator sequence* is the chain of nodes every input→output path passes
through (the cut nodes of the DAG); the nodes between two consecutive cut nodes, when there are any,
form a parallel region collapsed into one *composite* token together with the cut node that merges
it (the `Add` of a residual block, the `Concat` of an inception block). Each branch of a region is
then expanded recursively into its own sequence, so a model's *sequence set* is its main sequence
plus every branch sequence.

A token's identity (`Op.key`) is op type + attributes + the shapes of its constant inputs (weights);
a composite's key is its merge op's key and its branches' keys, sorted, so operand order does not
matter. Two ops with equal keys are structurally identical: one's weights can replace the other's.

Constant subgraphs (`Constant` nodes and nodes computed from constants only) are folded into the
weights of the nodes that read them; nodes that do not lie on an input→output path are ignored.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sommelier_core.errors import SommelierError

# integer constant inputs up to this size are part of a token's identity by value (Reshape shapes, axes)
_SMALL_INT_CONSTANT = 16


class SequenceError(SommelierError):
    """A graph has no operator sequence (no input→output path)."""


@dataclass(frozen=True)
class Op:
    """One position of an operator sequence: a single node, or a collapsed parallel region.

    For a composite, `merge` is the node that joins the branches (None when the region runs into
    the end of an enclosing branch), `branches` the branch sequences in key order (an empty
    sequence is a direct skip), and `nodes` every node it covers.
    """

    key: str
    """Structural identity: op type + attributes + weight shapes (composite: merge key + branch keys)."""
    node: str
    """The node name (composite: the merge node's, or the first branch node's)."""
    op_type: str
    """ONNX op type; `Block` for a composite."""
    inputs: tuple[str, ...]
    """Activation tensors the op reads from the sequence (composite: the region's entry tensor)."""
    output: str
    """The tensor the op hands to the next position of its sequence."""
    branches: tuple[OpSequence, ...] = ()
    merge: str | None = None
    """The merge node of a composite (None for a plain node or a region without one)."""

    @property
    def is_block(self) -> bool:
        return self.op_type == "Block"

    def flat_nodes(self) -> tuple[str, ...]:
        """Every node the op covers in a canonical order (branches in key order, then the merge).

        Two ops with the same key list structurally identical nodes at the same positions, which is
        what pairs weights for the bound and for synthesis.
        """
        if not self.is_block:
            return (self.node,)
        names: list[str] = []
        for branch in self.branches:
            for op in branch.ops:
                names.extend(op.flat_nodes())
        if self.merge is not None:
            names.append(self.merge)
        return tuple(names)


@dataclass(frozen=True)
class OpSequence:
    """A chain of ops from an entry tensor to an exit tensor; `path` says where it sits in the model."""

    path: str
    entry: str
    ops: tuple[Op, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(op.key for op in self.ops)


@dataclass(frozen=True)
class GraphView:
    """The activation DAG of a model: nodes by name, producers and consumers of each activation tensor."""

    model: onnx.ModelProto
    nodes: dict[str, onnx.NodeProto]
    order: dict[str, int]
    """Topological position of each node (the graph's own order, which ONNX requires topological)."""
    constants: dict[str, np.ndarray]
    """Initializers, `Constant` outputs and tensors computed from constants only (by name)."""
    producer: dict[str, str]
    consumers: dict[str, list[str]]
    input: str
    output: str
    node_keys: dict[str, str] = field(default_factory=dict)


def node_name(node: onnx.NodeProto, index: int) -> str:
    """A node's name, or `#<index>` for an unnamed node (stable for a given graph)."""
    return node.name or f"#{index}"


def graph_view(model: onnx.ModelProto) -> GraphView:
    """The activation DAG of a single-input model (the first graph input and output are used)."""
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [v.name for v in graph.input if v.name not in initializers]
    if not inputs or not graph.output:
        raise SequenceError(f"{graph.name or 'model'}: no graph input or output to build a sequence from")
    constants: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    constant_names = set(constants)
    nodes: dict[str, onnx.NodeProto] = {}
    order: dict[str, int] = {}
    producer: dict[str, str] = {}
    consumers: dict[str, list[str]] = defaultdict(list)
    for index, node in enumerate(graph.node):
        if node.op_type == "Constant" or (node.input and all(not i or i in constant_names for i in node.input)):
            # folded: a constant value, or a computation on constants only (e.g. a shape expression)
            constant_names.update(node.output)
            if node.op_type == "Constant":
                for attribute in node.attribute:
                    if attribute.name == "value":
                        constants[node.output[0]] = numpy_helper.to_array(attribute.t)
            continue
        name = node_name(node, index)
        nodes[name] = node
        order[name] = index
        for tensor in node.output:
            producer[tensor] = name
        for tensor in node.input:
            if tensor and tensor not in constant_names:
                consumers[tensor].append(name)
    view = GraphView(model, nodes, order, constants, producer, dict(consumers), inputs[0], graph.output[0].name)
    constant_set = constant_names
    for name, node in nodes.items():
        view.node_keys[name] = _node_key(node, constants, constant_set)
    return view


def _format_value(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, onnx.TensorProto):
        return "tensor" + "x".join(str(d) for d in value.dims)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _node_key(node: onnx.NodeProto, constants: dict[str, np.ndarray], constant_names: set[str]) -> str:
    """op type + attributes + constant inputs (shape, and dtype unless float32; small integer constants by value).

    The dtype is part of the token, so a float16 or int8 weight never matches a float32 one of the same shape:
    swapping it would not be the same arithmetic (segment matching is dtype-aware).
    """
    attributes = ",".join(
        f"{a.name}={_format_value(helper.get_attribute_value(a))}" for a in sorted(node.attribute, key=lambda a: a.name)
    )
    parts = []
    for position, tensor in enumerate(node.input):
        if not tensor or tensor not in constant_names:
            continue
        value = constants.get(tensor)
        if value is None:
            parts.append(f"{position}:const")
        elif value.dtype.kind in "iub" and value.size <= _SMALL_INT_CONSTANT:
            parts.append(f"{position}:={value.ravel().tolist()}")
        else:
            dtype = "" if value.dtype == np.float32 else f":{value.dtype.name}"
            parts.append(f"{position}:{'x'.join(str(d) for d in value.shape) or 'scalar'}{dtype}")
    return f"{node.op_type}{{{attributes}}}({';'.join(parts)})"


def weight_inputs(view: GraphView, name: str) -> list[tuple[int, str]]:
    """(position, tensor) of a node's constant inputs: the weights a swap replaces."""
    return [(k, t) for k, t in enumerate(view.nodes[name].input) if t and t in view.constants]


def activation_inputs(view: GraphView, name: str) -> list[str]:
    """A node's non-constant inputs."""
    return [t for t in view.nodes[name].input if t and t not in view.constants]


_ENTRY = "__entry__"
_EXIT = "__exit__"


def model_sequences(model: onnx.ModelProto) -> tuple[GraphView, list[OpSequence]]:
    """The model's sequence set: its main sequence, then every branch sequence (depth first)."""
    view = graph_view(model)
    relevant = _on_paths(view, view.input, [view.output], set(view.nodes))
    if not relevant:
        raise SequenceError(f"{model.graph.name or 'model'}: no path from {view.input} to {view.output}")
    main = _sequence(view, "main", view.input, [view.output], relevant)
    found: list[OpSequence] = []

    def collect(sequence: OpSequence) -> None:
        found.append(sequence)
        for op in sequence.ops:
            for branch in op.branches:
                if branch.ops:
                    collect(branch)

    collect(main)
    return view, found


def _successors(view: GraphView, name: str, region: set[str]) -> list[str]:
    return [c for t in view.nodes[name].output for c in view.consumers.get(t, []) if c in region]


def _on_paths(view: GraphView, entry: str, exits: list[str], region: set[str]) -> set[str]:
    """Nodes of `region` on some path from tensor `entry` to one of the tensors `exits`."""
    forward: set[str] = set()
    stack = [c for c in view.consumers.get(entry, []) if c in region]
    while stack:
        name = stack.pop()
        if name in forward:
            continue
        forward.add(name)
        stack.extend(_successors(view, name, region))
    backward: set[str] = set()
    stack = [view.producer[t] for t in exits if t in view.producer and view.producer[t] in region]
    while stack:
        name = stack.pop()
        if name in backward:
            continue
        backward.add(name)
        stack.extend(
            view.producer[t]
            for t in activation_inputs(view, name)
            if t in view.producer and view.producer[t] in region and t != entry
        )
    return forward & backward


def _sequence(view: GraphView, path: str, entry: str, exits: list[str], region: set[str]) -> OpSequence:
    """The sequence of the sub-DAG `region` between tensor `entry` and tensors `exits` (region non-empty)."""
    ordered = sorted(region, key=view.order.__getitem__)
    # edges among region nodes plus a virtual entry (produces `entry`) and exit (reads `exits`)
    preds: dict[str, list[str]] = {n: [] for n in ordered}
    for name in ordered:
        for tensor in activation_inputs(view, name):
            if tensor == entry:
                preds[name].append(_ENTRY)
            elif tensor in view.producer and view.producer[tensor] in region:
                preds[name].append(view.producer[tensor])
    exit_preds = [view.producer[t] if t != entry else _ENTRY for t in exits]
    paths_in: dict[str, int] = {_ENTRY: 1}
    for name in ordered:
        paths_in[name] = sum(paths_in.get(p, 0) for p in preds[name])
    succs: dict[str, list[str]] = defaultdict(list)
    for name, ps in preds.items():
        for p in ps:
            succs[p].append(name)
    for p in exit_preds:
        succs[p].append(_EXIT)
    paths_out: dict[str, int] = {_EXIT: 1}
    for name in reversed(ordered):
        paths_out[name] = sum(paths_out.get(s, 0) for s in succs[name])
    total = sum(paths_in.get(p, 0) for p in exit_preds)
    cuts = [n for n in ordered if paths_in[n] * paths_out[n] == total and total > 0]

    ops: list[Op] = []
    previous_output = entry
    previous_cut = -1
    positions = {n: i for i, n in enumerate(ordered)}
    for cut in [*cuts, None]:
        stop = positions[cut] if cut is not None else len(ordered)
        interior = ordered[previous_cut + 1 : stop]
        if cut is None and not interior:
            break
        merge_inputs = activation_inputs(view, cut) if cut is not None else list(exits)
        if interior:
            ops.append(
                _block(view, f"{path}/{len(ops)}", previous_output, set(interior), cut, merge_inputs, len(region))
            )
        else:
            ops.append(
                Op(
                    key=view.node_keys[cut],
                    node=cut,
                    op_type=view.nodes[cut].op_type,
                    inputs=tuple(merge_inputs),
                    output=view.nodes[cut].output[0],
                )
            )
        if cut is None:
            break
        previous_output = view.nodes[cut].output[0]
        previous_cut = positions[cut]
    return OpSequence(path=path, entry=entry, ops=tuple(ops))


def _block(
    view: GraphView, path: str, entry: str, interior: set[str], merge: str | None, merge_inputs: list[str], size: int
) -> Op:
    """A composite token for the parallel region `interior` between `entry` and the node `merge`."""
    components = _components(view, interior)
    branches: list[OpSequence] = []
    if entry in merge_inputs:
        branches.append(OpSequence(path=f"{path}/skip", entry=entry, ops=()))
    opaque = len(components) == 1 and len(interior) == size
    for index, component in enumerate(components):
        exits = [t for t in merge_inputs if t in view.producer and view.producer[t] in component]
        if opaque:
            # no cut node and one connected region: not series-parallel; one token by node multiset
            branches.append(_opaque(view, f"{path}/b{index}", entry, component, exits))
        else:
            branches.append(_sequence(view, f"{path}/b{index}", entry, exits, component))
    branches.sort(key=lambda b: "|".join(b.keys))
    merge_key = view.node_keys[merge] if merge is not None else "end"
    key = f"Block[{merge_key}]<" + " || ".join("|".join(b.keys) or "skip" for b in branches) + ">"
    output = view.nodes[merge].output[0] if merge is not None else (merge_inputs[0] if merge_inputs else entry)
    first = merge if merge is not None else min(interior, key=view.order.__getitem__)
    return Op(
        key=key,
        node=first,
        op_type="Block",
        inputs=(entry,),
        output=output,
        branches=tuple(branches),
        merge=merge,
    )


def _opaque(view: GraphView, path: str, entry: str, component: set[str], exits: list[str]) -> OpSequence:
    """A region that is not series-parallel, as a sequence of its nodes by (key, graph order)."""
    names = sorted(component, key=lambda n: (view.node_keys[n], view.order[n]))
    ops = tuple(
        Op(
            key="Opaque:" + view.node_keys[n],
            node=n,
            op_type=view.nodes[n].op_type,
            inputs=tuple(activation_inputs(view, n)),
            output=view.nodes[n].output[0],
        )
        for n in names
    )
    return OpSequence(path=path, entry=entry, ops=ops)


def _components(view: GraphView, interior: set[str]) -> list[set[str]]:
    """Weakly connected components of the region's nodes, in graph order of their first node."""
    neighbours: dict[str, set[str]] = {n: set() for n in interior}
    for name in interior:
        for succ in _successors(view, name, interior):
            neighbours[name].add(succ)
            neighbours[succ].add(name)
    seen: set[str] = set()
    components = []
    for name in sorted(interior, key=view.order.__getitem__):
        if name in seen:
            continue
        component, stack = set(), [name]
        while stack:
            current = stack.pop()
            if current in component:
                continue
            component.add(current)
            stack.extend(neighbours[current] - component)
        seen |= component
        components.append(component)
    return components
