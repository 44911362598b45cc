"""Model identity: a fingerprint of the canonical ONNX graph and weights (design §2).

The semantic index is keyed by fingerprint, so the same network published twice — under other
tensor or node names, by another producer — is one entry, while any change of a weight is not.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper


def fingerprint(model: onnx.ModelProto) -> str:
    """sha256 over the canonical graph and weights (design §2).

    Tensor names become positional ids in order of definition, node names, doc strings,
    producer, metadata and value_info are ignored, and symbolic dims read as `?`; what remains is
    opsets, operators, attributes, wiring and weight values. Unused initializers do not count.
    """
    digest = hashlib.sha256()
    for opset in sorted((o.domain, o.version) for o in model.opset_import):
        digest.update(f"opset:{opset[0]}:{opset[1]};".encode())
    _Canonicalizer(digest).graph(model.graph, {})
    for function in sorted(model.functions, key=lambda f: (f.domain, f.name)):
        body = onnx.FunctionProto()
        body.CopyFrom(function)
        body.ClearField("doc_string")
        digest.update(body.SerializeToString(deterministic=True))
    return digest.hexdigest()


class _Canonicalizer:
    """Writes a graph into a digest with tensor names replaced by positional ids (see `fingerprint`)."""

    def __init__(self, digest: Any) -> None:
        self.digest = digest
        self.names: dict[str, str] = {}

    def graph(self, graph: onnx.GraphProto, outer_initializers: dict[str, onnx.TensorProto]) -> None:
        initializers = {**outer_initializers, **{t.name: t for t in graph.initializer}}
        for value in graph.input:
            if value.name not in initializers:
                self._write("input", self._define(value.name), _type_text(value.type))
        for node in graph.node:
            inputs = [self._use(n, initializers) for n in node.input]
            outputs = [self._define(n) for n in node.output]
            self._write("node", node.domain, node.op_type, *inputs, "->", *outputs)
            for attribute in sorted(node.attribute, key=lambda a: a.name):
                self._attribute(attribute, initializers)
        for value in graph.output:
            self._write("output", self._use(value.name, initializers), _type_text(value.type))

    def _define(self, name: str) -> str:
        if not name:
            return ""
        self.names[name] = f"v{len(self.names)}"
        return self.names[name]

    def _use(self, name: str, initializers: dict[str, onnx.TensorProto]) -> str:
        if not name or name in self.names:
            return self.names.get(name, "")
        canonical = self._define(name)
        if name in initializers:
            self._write("weight", canonical, _tensor_digest(initializers[name]))
        return canonical

    def _attribute(self, attribute: onnx.AttributeProto, initializers: dict[str, onnx.TensorProto]) -> None:
        self._write("attr", attribute.name, str(attribute.type), attribute.ref_attr_name)
        kind = onnx.AttributeProto
        if attribute.type == kind.GRAPH:
            self.graph(attribute.g, initializers)
        elif attribute.type == kind.GRAPHS:
            for sub in attribute.graphs:
                self.graph(sub, initializers)
        elif attribute.type == kind.TENSOR:
            self._write(_tensor_digest(attribute.t))
        elif attribute.type == kind.TENSORS:
            self._write(*(_tensor_digest(t) for t in attribute.tensors))
        elif attribute.type == kind.TYPE_PROTO:
            self._write(_type_text(attribute.tp))
        elif attribute.type == kind.SPARSE_TENSOR:
            self._write(hashlib.sha256(attribute.sparse_tensor.SerializeToString(deterministic=True)).hexdigest())
        else:
            self._write(repr(onnx.helper.get_attribute_value(attribute)))

    def _write(self, *parts: str) -> None:
        self.digest.update(("\x1f".join(parts) + "\x1e").encode())


def _tensor_digest(tensor: onnx.TensorProto) -> str:
    """dtype, shape and sha256 of the values, however the tensor stores them (raw or typed fields)."""
    array = numpy_helper.to_array(tensor)
    if array.dtype == object:
        data = b"\x00".join(v if isinstance(v, bytes) else str(v).encode() for v in array.ravel())
    else:
        data = np.ascontiguousarray(array).tobytes()
    return f"{array.dtype.str}{list(array.shape)}:{hashlib.sha256(data).hexdigest()}"


def _type_text(type_proto: onnx.TypeProto) -> str:
    if type_proto.HasField("tensor_type"):
        tensor_type = type_proto.tensor_type
        dims = [str(d.dim_value) if d.HasField("dim_value") else "?" for d in tensor_type.shape.dim]
        shape = f"[{','.join(dims)}]" if tensor_type.HasField("shape") else "[*]"
        return f"tensor({tensor_type.elem_type}){shape}"
    return str(type_proto.WhichOneof("value"))
