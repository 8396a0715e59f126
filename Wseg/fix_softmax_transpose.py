"""Guide step "使用fix_onnx.py得到修改后的onnx文件": collapse Transpose-Softmax-Transpose.

    python3 fix_softmax_transpose.py IN.onnx OUT.onnx [--opset {13,11}]

At opset 11 the PyTorch exporter writes the channel softmax of the mask head as
Transpose(perm 0,3,2,1) -> Softmax(axis=3) -> Transpose(perm 0,3,2,1), because ONNX
Softmax-11 normalises over *all* axes from `axis` on. The guide's fix replaces the three nodes
by one Softmax(axis=1), which ATC needs and runs as a per-pixel channel softmax.

Under ONNX semantics that node is only a channel softmax from opset 13 on (Softmax-13
normalises over the one axis given); at opset 11 ONNX Runtime normalises it over all
21*H*W values and every output changes. So by default (--opset 13) the fixed graph is also
declared opset 13: ONNX Runtime and ATC (CANN >= 7.0 accepts opsets 9-18) then compute the
same function as the PyTorch model. The few ops whose opset-13 signature differs (`axes`
moved from an attribute to an input in Unsqueeze, Squeeze, ReduceSum) are rewritten.

--opset 11 writes the guide's file literally (opset 11, single Softmax(axis=1)) for CANN
releases that accept only opset 11 (5.x, 6.0.x, the guide's 6.0.RC1). That file is for ATC
only: it is tagged `segzoo_atc_only` in its metadata and ONNX Runtime gives wrong masks on it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from common.cli import UserError, doc_parser, script_entry  # first: a Ctrl-C during the imports below is one line

import numpy as np
import onnx
from onnx import helper, numpy_helper

from common.runtime.graph import (META_ATC_ONLY as ATC_ONLY_KEY, consumers, get_attribute, load_onnx,
                                  producers, save_onnx, set_metadata)

DEFAULT_DOMAINS = ("", "ai.onnx")
ATC_ONLY_NOTE = ("Softmax(axis=1) at opset 11: ATC runs it per pixel over channels, ONNX Runtime "
                 "over all C*H*W values; run ONNX Runtime on the opset-13 fix instead")
# Ops of this network whose opset-11 and opset-13 definitions compute the same result from the
# same inputs and attributes (between the two only new tensor types were added).
SAME_IN_OPSET_11_AND_13 = frozenset({
    "Add", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv",
    "Div", "Equal", "Expand", "Flatten", "Gather", "GlobalAveragePool", "Identity", "Log", "Mul",
    "Pow", "ReduceMax", "ReduceMean", "Relu", "Reshape", "Resize", "Shape", "Sigmoid", "Slice",
    "Sub", "Transpose", "Where",
})
# Opset 13 moved `axes` from an attribute to a second (int64 tensor) input.
AXES_BECAME_INPUT = frozenset({"Unsqueeze", "Squeeze", "ReduceSum"})


def parse_args(argv=None) -> argparse.Namespace:
    parser = doc_parser(__doc__, epilog_after=2)
    parser.add_argument("input", type=Path, help="ONNX file from wseg_pth2onnx.py")
    parser.add_argument("output", type=Path, help="fixed ONNX file to write")
    parser.add_argument("--opset", type=int, choices=(13, 11), default=13,
                        help="13 (default): correct on ONNX Runtime and CANN >= 7.0 ATC; "
                             "11: the guide's literal file, ATC on CANN <= 6.0 only")
    return parser.parse_args(argv)


# ---- finding and collapsing the pattern -------------------------------------------------

def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            return int(entry.version)
    raise UserError("model declares no default-domain opset")


def find_transposed_softmaxes(graph: onnx.GraphProto) -> list[tuple]:
    """(transpose_in, softmax, transpose_out, channel_axis) for each Transpose-Softmax-Transpose
    whose transposes cancel and whose softmax runs over the last axis only (so that it means a
    single-axis softmax under every opset)."""
    made_by = producers(graph)
    used_by = consumers(graph)
    graph_outputs = {out.name for out in graph.output}
    found = []
    for softmax in graph.node:
        if softmax.op_type != "Softmax":
            continue
        before = made_by.get(softmax.input[0])
        after = used_by.get(softmax.output[0], [])
        if (before is None or before.op_type != "Transpose" or len(after) != 1
                or after[0].op_type != "Transpose" or softmax.output[0] in graph_outputs):
            continue
        perm_in = list(get_attribute(before, "perm", []))
        perm_out = list(get_attribute(after[0], "perm", []))
        rank = len(perm_in)
        axis = get_attribute(softmax, "axis", 1)
        axis = axis + rank if axis < 0 else axis
        cancels = rank > 0 and len(perm_out) == rank and all(
            perm_in[perm_out[j]] == j for j in range(rank))
        if cancels and axis == rank - 1:
            found.append((before, softmax, after[0], perm_in[axis]))
    return found


def collapse_softmax_transposes(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """Replace each matched Transpose-Softmax-Transpose by one Softmax over the original axis.

    Returns a new model and one line per change. The new node keeps the Softmax's name and its
    place in the node list, so the graph stays topologically sorted.
    """
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    graph = fixed.graph
    matches = find_transposed_softmaxes(graph)
    if not matches:
        return fixed, []
    used_by = consumers(graph)
    graph_outputs = {out.name for out in graph.output}
    replace, drop, changes = {}, set(), []
    for before, softmax, after, channel_axis in matches:
        replace[id(softmax)] = helper.make_node("Softmax", [before.input[0]], [after.output[0]],
                                                name=softmax.name, axis=channel_axis)
        drop.add(id(after))
        # The first Transpose may feed other nodes too; keep it then.
        if len(used_by[before.output[0]]) == 1 and before.output[0] not in graph_outputs:
            drop.add(id(before))
        changes.append(f"{before.op_type}{list(get_attribute(before, 'perm'))} -> "
                       f"Softmax(axis={get_attribute(softmax, 'axis', 1)}) -> {after.op_type} "
                       f"collapsed into Softmax(axis={channel_axis}) '{softmax.name}'")
    nodes = [replace.get(id(node), node) for node in graph.node if id(node) not in drop]
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_dangling_value_info(graph)
    return fixed, changes


def _drop_dangling_value_info(graph: onnx.GraphProto) -> None:
    live = {name for node in graph.node for name in list(node.input) + list(node.output)}
    kept = [info for info in graph.value_info if info.name in live]
    del graph.value_info[:]
    graph.value_info.extend(kept)


# ---- declaring opset 13 -----------------------------------------------------------------

def upgrade_to_opset13(model: onnx.ModelProto, single_axis_outputs: set[str] = frozenset()
                       ) -> tuple[onnx.ModelProto, list[str]]:
    """Declare opset 13 in place, rewriting the ops whose signature changed; refuse unknown ones.

    `single_axis_outputs`: outputs of Softmax nodes already meant as single-axis (the collapsed
    ones). Any other Softmax must run over the last axis, where both opsets agree; anything else
    would silently change meaning and is refused.
    """
    graph = model.graph
    moved = []
    taken = {init.name for init in graph.initializer}
    for node in graph.node:
        if node.domain not in DEFAULT_DOMAINS:
            continue
        if node.op_type in AXES_BECAME_INPUT:
            moved.extend(_axes_attribute_to_input(graph, node, taken))
        elif node.op_type == "Softmax":
            if node.output[0] not in single_axis_outputs:
                _check_softmax_over_last_axis(graph, node)
        elif node.op_type not in SAME_IN_OPSET_11_AND_13:
            raise UserError(f"op {node.op_type} ('{node.name}') is not known to mean the same at "
                            f"opset 13; use --opset 11")
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            entry.version = 13
    model.ir_version = max(model.ir_version, 7)  # opset 13 needs IR version 7
    counts = {op: moved.count(op) for op in sorted(set(moved))}
    changes = [f"axes attribute moved to an input in {len(moved)} nodes ("
               + ", ".join(f"{op} x{n}" for op, n in counts.items()) + ")"] if moved else []
    return model, changes


def _axes_attribute_to_input(graph: onnx.GraphProto, node: onnx.NodeProto,
                             taken: set[str]) -> list[str]:
    axes = get_attribute(node, "axes")
    if axes is None:
        return []  # absent axes mean "all axes" in both opsets
    if len(node.input) != 1:
        raise UserError(f"{node.op_type} '{node.name}' has {len(node.input)} inputs at opset 11")
    name = f"{node.name or node.output[0]}_axes"
    while name in taken:
        name += "_"
    taken.add(name)
    graph.initializer.append(numpy_helper.from_array(np.asarray(list(axes), dtype=np.int64), name))
    kept = [attr for attr in node.attribute if attr.name != "axes"]
    del node.attribute[:]
    node.attribute.extend(kept)
    node.input.append(name)
    return [node.op_type]


def _check_softmax_over_last_axis(graph: onnx.GraphProto, node: onnx.NodeProto) -> None:
    axis = get_attribute(node, "axis", 1)
    rank = _rank_of(graph, node.input[0])
    if axis == -1 or (rank is not None and axis == rank - 1):
        return
    raise UserError(f"Softmax '{node.name}' (axis={axis}) would change meaning at opset 13; "
                    f"use --opset 11")


def _rank_of(graph: onnx.GraphProto, name: str) -> int | None:
    for info in list(graph.value_info) + list(graph.input) + list(graph.output):
        if info.name == name and info.type.tensor_type.HasField("shape"):
            return len(info.type.tensor_type.shape.dim)
    return None


# ---- the whole fix ----------------------------------------------------------------------

def fix_for_atc(model: onnx.ModelProto, opset: int = 13) -> tuple[onnx.ModelProto, list[str]]:
    """Collapse the transposed softmax; declare opset 13 (default) or keep 11 and tag the file."""
    source_opset = default_opset(model)
    matches = find_transposed_softmaxes(model.graph)
    fixed, changes = collapse_softmax_transposes(model)
    if not changes:
        raise UserError("no Transpose-Softmax-Transpose over the last axis found "
                        "(already fixed, or not a wseg_pth2onnx.py export?)")
    if opset == 13 and source_opset < 13:
        collapsed_outputs = {after.output[0] for _, _, after, _ in matches}
        fixed, upgrades = upgrade_to_opset13(fixed, collapsed_outputs)
        changes += upgrades + [f"opset {source_opset} -> 13 (where Softmax(axis=1) is the channel "
                               f"softmax that ATC runs)"]
    elif opset == 11:
        if source_opset != 11:
            raise UserError(f"--opset 11 needs an opset-11 export, this one is opset {source_opset}")
        set_metadata(fixed, {ATC_ONLY_KEY: ATC_ONLY_NOTE})
        changes.append("kept opset 11 for ATC on CANN <= 6.0 only: ONNX Runtime computes a "
                       f"different softmax on this file (metadata {ATC_ONLY_KEY})")
    return fixed, changes


def main(args: argparse.Namespace) -> int:
    model = load_onnx(args.input)
    fixed, changes = fix_for_atc(model, opset=args.opset)
    save_onnx(fixed, args.output)
    for line in changes:
        print(f"  {line}")
    print(f"wrote {args.output} (opset {default_opset(fixed)})")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
