"""Edits of an ONNX graph shared by the export and the quantized artifacts: debug metadata out, model metadata set,
lossless size cuts of a quantized graph. Each edits the `onnx.ModelProto` in place and returns it."""


def strip_debug_metadata(proto):
    """Drop the exporter's per-node debug metadata (stack traces with this machine's paths, FX node names, name
    scopes) and doc strings: nothing at run time reads them, and they are a sizeable share of a small model's file
    (docs/results.md, "ONNX artifacts of the demo model"). The model-level metadata (colour order, preprocessing) is
    kept."""
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    return proto


def with_metadata(proto, meta: dict):
    """`proto` without debug metadata and with exactly `meta` as its model-level metadata, in place."""
    strip_debug_metadata(proto)
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=str(key), value=str(value))
    return proto


def compact_graph(proto):
    """Lossless size cuts for a quantized graph, in place: the all-zero zero points of DequantizeLinear nodes on
    stored tensors (weights, int32 biases) are dropped (0 is the operator's default; a bias zero point costs 4 bytes
    per channel), and every internal tensor gets a short name (the exporter's names, value_info and node names are
    long). Activation quantize/dequantize pairs are left whole (ONNX Runtime fuses only pairs with the same inputs),
    and the graph's inputs and outputs keep their names. Graphs with subgraphs, sparse initializers or local
    functions are returned unchanged. Outputs are bit-identical (tests/test_quantize.py)."""
    from onnx import AttributeProto, numpy_helper

    graph = proto.graph
    if graph.sparse_initializer or proto.functions or any(
            a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        return proto
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    initializers = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) != 3 or node.input[0] not in initializers:
            continue
        zero_point = node.input[2]
        if zero_point in initializers and zero_point not in keep and \
                not numpy_helper.to_array(initializers[zero_point]).any():
            del node.input[2]
    used = {name for node in graph.node for name in node.input} | keep
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)

    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in names:
            candidate = f"t{len(names):x}"
            while candidate in keep:  # never take the name of a graph input or output
                candidate = "_" + candidate
            names[name] = candidate
        return names[name]

    for tensor in graph.initializer:
        tensor.name = short(tensor.name)
    for node in graph.node:
        node.name = ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    del graph.value_info[:]
    return proto
