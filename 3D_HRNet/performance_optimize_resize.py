"""Guide step "优化onnx" (optimize the ONNX): `performance_optimize_resize.py hrnet.onnx hrnet.onnx`.

The ModelZoo script switches four bilinear Resize nodes to `mode='nearest'` for Ascend speed,
naming them as torch 1.8 numbered them (`Resize_585`, `Resize_1350`, `Resize_1363`,
`Resize_1376`); with any newer exporter those names do not exist and its edit silently does
nothing. Here the same four nodes are found by graph structure:

- the three Resizes feeding the head concat (branches 1, 2, 3 upsampled to 1/4 resolution;
  `Resize_1350/1363/1376`),
- the Resize of the last stage-3 module's fuse from branch 1 into branch 0 (`Resize_585`).

`coordinate_transformation_mode` stays `align_corners` and `nearest_mode` stays `floor`, as in
the guide. The edit is not numerically neutral (see the pack README for what it costs), so it
is a choice: `--resize-mode linear` leaves every Resize as exported. Either way the script
prints the two output Convs to pass to ATC as `--out_nodes` (output1 = aux, output2 = OCR).
"""
from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass

from common.cli import UserError, script_entry  # first: a Ctrl-C during the imports below is one line

import onnx

from common.runtime.atc import atc_command
from common.runtime.graph import (atc_out_nodes, get_attribute, load_onnx, producers, save_onnx,
                                  set_attribute, set_metadata)

META_RESIZE_EDIT = "segzoo_resize_edit"
RESIZE_MODES = ("nearest", "linear")


@dataclass(frozen=True)
class ResizeTarget:
    node: onnx.NodeProto
    role: str
    guide_name: str  # the node's name in the torch 1.8 export the guide was written for


# ---- finding the nodes by structure ----------------------------------------------------------

def _producer_type(producer_of: dict, tensor: str) -> str | None:
    node = producer_of.get(tensor)
    return node.op_type if node is not None else None


def head_concat_resizes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The Resizes feeding the concat of the four branches: Concat(x0, Resize, Resize, Resize)."""
    producer_of = producers(graph)
    found = []
    for node in graph.node:
        if node.op_type != "Concat" or len(node.input) < 2:
            continue
        upsampled = [_producer_type(producer_of, name) == "Resize" for name in node.input[1:]]
        if all(upsampled) and _producer_type(producer_of, node.input[0]) != "Resize":
            found.append(node)
    if len(found) != 1:
        raise UserError(f"expected exactly one concat of upsampled branches (the HRNet head), found {len(found)}")
    return [producer_of[name] for name in found[0].input[1:]]


def _flatten_add_chain(producer_of: dict, tensor: str) -> list[str]:
    """Addends of a left-nested Add chain, in summation order."""
    node = producer_of.get(tensor)
    if node is None or node.op_type != "Add":
        return [tensor]
    return _flatten_add_chain(producer_of, node.input[0]) + _flatten_add_chain(producer_of, node.input[1])


def branch0_fuse_chains(graph: onnx.GraphProto) -> list[list[onnx.NodeProto]]:
    """Per multi-resolution module, in graph order: the Resizes summed into output branch 0.

    Output 0 of a module is ReLU(x0 + up(x1) + up(x2) ...): one plain addend, the rest Resizes.
    Other outputs also add strided convs, and residual blocks add no Resize at all.
    """
    producer_of = producers(graph)
    chains = []
    for node in graph.node:
        if node.op_type != "Relu" or _producer_type(producer_of, node.input[0]) != "Add":
            continue
        addends = _flatten_add_chain(producer_of, node.input[0])
        resized = [producer_of[a] for a in addends if _producer_type(producer_of, a) == "Resize"]
        if resized and len(addends) - len(resized) == 1:
            chains.append(resized)
    return chains


def last_stage3_fuse_resize(graph: onnx.GraphProto) -> onnx.NodeProto:
    """Stage-3 modules have three branches, so two Resizes feed their output 0; the last such
    module is stage3.3 and its first summed Resize comes from branch 1."""
    stage3 = [chain for chain in branch0_fuse_chains(graph) if len(chain) == 2]
    if not stage3:
        raise UserError("no three-branch module found (the HRNet stage 3)")
    return stage3[-1][0]


def guide_resize_targets(graph: onnx.GraphProto) -> list[ResizeTarget]:
    """The guide's four nodes, in the guide's order (1376, 1363, 1350, 585)."""
    head = head_concat_resizes(graph)
    if len(head) != 3:
        raise UserError(f"the head concat has {len(head)} upsampled branches, expected 3 (HRNet-W48)")
    targets = [ResizeTarget(node, f"head upsample of branch {k}", guide)
               for k, node, guide in zip((3, 2, 1), head[::-1], ("Resize_1376", "Resize_1363", "Resize_1350"))]
    targets.append(ResizeTarget(last_stage3_fuse_resize(graph), "stage3.3 fuse, branch 1 -> branch 0",
                                "Resize_585"))
    return targets


# ---- the edit ------------------------------------------------------------------------------

def set_resize_modes(model: onnx.ModelProto, mode: str = "nearest") -> list[tuple[ResizeTarget, str]]:
    """Set `mode` on the guide's four Resizes in place; return (target, previous mode) pairs."""
    if mode not in RESIZE_MODES:
        raise UserError(f"unknown Resize mode '{mode}' (expected {' or '.join(RESIZE_MODES)})")
    changes = []
    for target in guide_resize_targets(model.graph):
        previous = get_attribute(target.node, "mode", b"nearest")
        previous = previous.decode() if isinstance(previous, bytes) else str(previous)
        set_attribute(target.node, "mode", mode)
        changes.append((target, previous))
    return changes


def optimize(model: onnx.ModelProto, resize_mode: str = "nearest") -> list[tuple[ResizeTarget, str]]:
    """The guide's edit (or none with resize_mode='linear'), recorded in the model metadata."""
    changes = set_resize_modes(model, resize_mode)
    set_metadata(model, {META_RESIZE_EDIT: f"{resize_mode}:{','.join(t.guide_name for t, _ in changes)}"})
    return changes


# ---- command line --------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", help="exported ONNX model (hrnet.onnx)")
    parser.add_argument("output", help="where to write the edited model (may be the input)")
    parser.add_argument("--resize-mode", choices=RESIZE_MODES, default="nearest",
                        help="nearest: the guide's edit (faster on Ascend, changes the outputs); "
                             "linear: keep the exported bilinear Resizes (fp32-exact)")
    return parser.parse_args(argv)


def _input_shape(model: onnx.ModelProto) -> dict[str, list]:
    first = model.graph.input[0]
    dims = [d.dim_value if d.dim_value else 1 for d in first.type.tensor_type.shape.dim]
    return {first.name: dims}


def main(args: argparse.Namespace) -> int:
    model = load_onnx(args.input)
    changes = optimize(model, args.resize_mode)
    for target, previous in changes:
        state = "unchanged" if previous == args.resize_mode else f"mode {previous} -> {args.resize_mode}"
        print(f"  {target.node.name:<32} {target.role:<38} (guide: {target.guide_name}): {state}")
    save_onnx(model, args.output)
    out_nodes = atc_out_nodes(model)
    print(f"wrote {args.output}")
    print(f'ATC out nodes (output1 = aux, output2 = OCR): --out_nodes="{";".join(out_nodes)}"')
    command = atc_command(args.output, "hrnet_bs1", _input_shape(model), "Ascend${chip_name}",
                          out_nodes=out_nodes, log="debug")
    print("ATC (Ascend only): " + shlex.join(command))
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
