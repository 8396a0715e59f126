"""Guide step "导出的onnx需要将label输出int64改为int32": make the labels output int32.

    python3 label_to_int32.py [IN.onnx [OUT.onnx]]

Defaults: IN = maskrcnn_r50_fpn_1x.onnx, OUT = IN (rewritten in place, atomically), as the
guide's argument-less call. The labels output is found by structure, not by node name (the
ModelZoo script edits a node called `Cast_622`, a name that depends on the exporter
version): it is the only graph output of element type int64. If a Cast to int64 produces it
and nothing else reads that Cast, the Cast's target type becomes int32; otherwise a Cast to
int32 is appended in front of the output. Values are unchanged (labels are -1..79). The
model options in the ONNX metadata get `labels_int32: true`, so the PyTorch reference run
(common.torch_infer) rebuilds a module with the same output types.
"""
from __future__ import annotations

import argparse
import json

from common.cli import UserError, script_entry  # first: a Ctrl-C during the imports below is one line

import onnx
from onnx import TensorProto, helper

from common.runtime.graph import (META_OPTIONS, consumers, get_attribute, load_onnx, producers,
                                  read_metadata, save_onnx, set_attribute, set_metadata)

DEFAULT_ONNX = "maskrcnn_r50_fpn_1x.onnx"


def find_int64_output(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    found = [out for out in model.graph.output if out.type.tensor_type.elem_type == TensorProto.INT64]
    if len(found) != 1:
        names = [out.name for out in found]
        raise UserError(f"expected exactly one int64 graph output (the labels), found {len(found)}: {names}")
    return found[0]


def labels_to_int32(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """Pure graph edit; returns the edited model and a one-line description of the change."""
    graph = model.graph
    output = find_int64_output(model)
    producer = producers(graph).get(output.name)
    readers = consumers(graph).get(output.name, [])
    if (producer is not None and producer.op_type == "Cast"
            and get_attribute(producer, "to") == TensorProto.INT64 and not readers):
        set_attribute(producer, "to", TensorProto.INT32)
        change = f"Cast node '{producer.name}' feeding output '{output.name}': int64 -> int32"
    else:
        inner_name = f"{output.name}_int64"
        for node in graph.node:
            node.output[:] = [inner_name if name == output.name else name for name in node.output]
            node.input[:] = [inner_name if name == output.name else name for name in node.input]
        graph.node.append(helper.make_node("Cast", [inner_name], [output.name], to=TensorProto.INT32,
                                           name=f"{output.name}_to_int32"))
        change = f"added Cast '{output.name}_to_int32' in front of output '{output.name}': int64 -> int32"
    output.type.tensor_type.elem_type = TensorProto.INT32
    options = json.loads(read_metadata(model).get(META_OPTIONS, "{}"))
    options["labels_int32"] = True
    set_metadata(model, {META_OPTIONS: json.dumps(options)})
    return model, change


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", nargs="?", default=DEFAULT_ONNX, help=f"ONNX model (default {DEFAULT_ONNX})")
    parser.add_argument("output", nargs="?", default=None, help="ONNX file to write (default: the input, in place)")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    model = load_onnx(args.input)
    model, change = labels_to_int32(model)
    output_path = args.output or args.input
    save_onnx(model, output_path)
    print(f"{change}; wrote {output_path}")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
