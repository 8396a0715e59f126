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

import torch

from common.cli import UserError, script_entry
from common.files.folders import output_file_parent
from common.pipeline.sizes import check_run_size
from common.runtime.export import export_onnx
from wseg import model
from wseg.config import DEFAULT_PAD_SIZE as DEFAULT_INPUT_SIZE
from wseg.config import INPUT_NAMES, OUTPUT_NAMES, PACK
# (config section, key, value this network implements)
FIXED_CONFIG = (("NET", "BACKBONE", "resnet38"), ("NET", "MODEL", "ae"),
                ("NET", "SG_PSI", model.SG_PSI), ("NET", "FOCAL_P", model.FOCAL_P),
                ("NET", "FOCAL_LAMBDA", model.FOCAL_LAMBDA))


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


def read_config(path: Path) -> dict:
    """Load the yaml config and check the values the network hard-codes."""
    import yaml  # only needed when a config is given

    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: expected a mapping of config sections")
    for section, key, implemented in FIXED_CONFIG:
        value = (config.get(section) or {}).get(key, implemented)
        if value != implemented:
            raise UserError(f"{path}: {section}.{key} is {value!r}; this network implements "
                            f"{implemented!r} only")
    return config


def input_size_from(args: argparse.Namespace, config: dict | None) -> int:
    size = args.input_size
    if size is None and config is not None:
        pad_size = (config.get("TEST") or {}).get("PAD_SIZE")
        if pad_size is not None:
            if len(set(pad_size)) != 1:
                raise UserError(f"{args.config}: TEST.PAD_SIZE {pad_size} is not square")
            size = int(pad_size[0])
    size = DEFAULT_INPUT_SIZE if size is None else size
    if size < 8 or size % 8:
        raise UserError(f"input size {size}: must be a positive multiple of 8 (output stride)")
    return size


def main(args: argparse.Namespace) -> int:
    output_file_parent(args.output)  # before the slow load and export, not after them
    config = read_config(args.config) if args.config is not None else None
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
