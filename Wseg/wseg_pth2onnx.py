"""Guide step "导出onnx文件" (export): checkpoint -> ONNX with a dynamic batch axis.

    python3 wseg_pth2onnx.py [CONFIG.yaml] MODEL.pth OUT.onnx [--input-size N] [--lean-mask]

Input `image` float32 [B,3,N,N] (N = 1024 as in the guide, or the config's TEST.PAD_SIZE);
outputs `cls` [B,20] (raw class scores) and `mask` [B,21,N,N] (softmax probabilities,
background first), or with --lean-mask `mask` [B,21,N/4,N/4] before the final upsample
(wseg_postprocess.py then performs that upsample). Opset 11 as ATC expects; run
fix_softmax_transpose.py on the result before ATC.

The optional config (upstream configs/voc_resnet38.yaml) is only checked: the values this
network hard-codes (backbone, model, SG_PSI, FOCAL_P, FOCAL_LAMBDA) must agree with it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from common.cli import UserError, script_entry  # first: a Ctrl-C during the imports below is one line

import torch

from common.files.config_reader import Setting, read_guide_config
from common.files.folders import output_file_parent
from common.pipeline.sizes import check_run_size
from common.runtime.export import export_onnx
from wseg import model
from wseg.config import DEFAULT_PAD_SIZE as DEFAULT_INPUT_SIZE
from wseg.config import INPUT_NAMES, OUTPUT_NAMES, PACK
# The settings of the upstream configs/voc_resnet38.yaml this network hard-codes, and the pad.
CONFIG_SETTINGS = (
    Setting("NET.BACKBONE", "str", fixed="resnet38"),
    Setting("NET.MODEL", "str", fixed="ae"),
    Setting("NET.SG_PSI", "float", fixed=model.SG_PSI),
    Setting("NET.FOCAL_P", "float", fixed=model.FOCAL_P),
    Setting("NET.FOCAL_LAMBDA", "float", fixed=model.FOCAL_LAMBDA),
    Setting("TEST.PAD_SIZE", "int", length=2, minimum=8, multiple_of=8),
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="[CONFIG.yaml] MODEL.pth OUT.onnx",
                        help="optional upstream config, the checkpoint, the ONNX file to write")
    parser.add_argument("--input-size", type=int, default=None,
                        help="square input side (default: the config's TEST.PAD_SIZE, else 1024); "
                             "a multiple of 8")
    parser.add_argument("--lean-mask", action="store_true",
                        help="output the mask at 1/4 resolution (21 x N/4 x N/4, 16x fewer bytes); "
                             "the postprocess upsamples it")
    args = parser.parse_args(argv)
    if len(args.paths) not in (2, 3):
        parser.error("expected [CONFIG.yaml] MODEL.pth OUT.onnx")
    args.config = Path(args.paths[0]) if len(args.paths) == 3 else None
    args.checkpoint, args.output = (Path(p) for p in args.paths[-2:])
    return args


def read_config(path: Path | None) -> dict:
    """The settings of the yaml config, checked against what the network hard-codes (the
    published voc_resnet38.yaml's values when the file is absent: no 1-stage-wseg clone)."""
    return read_guide_config(path, CONFIG_SETTINGS, "1-stage-wseg")[0]


def input_size_from(args: argparse.Namespace, config: dict | None) -> int:
    size = args.input_size
    if size is None and config.get("TEST.PAD_SIZE") is not None:
        height, width = config["TEST.PAD_SIZE"]
        if height != width:
            raise UserError(f"{args.config}: TEST.PAD_SIZE {[height, width]} is not square")
        size = height
    size = DEFAULT_INPUT_SIZE if size is None else size
    if size < 8 or size % 8:
        raise UserError(f"input size {size}: must be a positive multiple of 8 (output stride)")
    return size


def main(args: argparse.Namespace) -> int:
    output_file_parent(args.output)  # before the slow load and export, not after them
    config = read_config(args.config)
    size = input_size_from(args, config)
    check_run_size(f"input size {size}", (size, size), output_shapes=PACK.output_shapes)
    options = {"lean_mask": bool(args.lean_mask)}
    network = model.load_pretrained(args.checkpoint, **options)
    dummy = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    export_onnx(network, [dummy], args.output, input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                dynamic_batch=True, pack=PACK.name, model_options=options)
    mask_side = model.lean_mask_size(size) if args.lean_mask else size
    print(f"wrote {args.output}: image [B,3,{size},{size}] -> cls [B,20], "
          f"mask [B,21,{mask_side},{mask_side}] (opset 11, dynamic batch)")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
