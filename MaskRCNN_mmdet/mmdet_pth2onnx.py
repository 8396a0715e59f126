"""Guide step "导出onnx": mmdet Mask R-CNN checkpoint (.pth) -> ONNX with fixed-size outputs.

    python3 mmdet_pth2onnx.py [CONFIG] CHECKPOINT --output-file maskrcnn_r50_fpn_1x.onnx --shape 1216 1216

The guide runs mmdetection's tools/pytorch2onnx.py after patching mmdet; here the network is
this pack's model.py, so CONFIG (the mmdet config path of the guide) is accepted for the same
command line but not read: the architecture is mask_rcnn_r50_fpn_1x_coco. The checkpoint is
loaded strictly. Graph: input `input` [1,3,H,W] float32; outputs `boxes` [1,100,5],
`labels` [1,100] int64 (run label_to_int32.py for the Ascend int32 variant), `masks`
[1,100,80,28,28]: the guide's shapes behind a batch axis of 1, so the per-image output files
are exactly the guide's. Opset 16 by default: its RoiAlign has `coordinate_transformation_mode=
half_pixel`, which is mmdet's aligned=True. `--opset 11` (for converters limited to opset 11)
uses mmcv's emulation instead, RoIs shifted by half a cell into RoiAlign-10, which differs for
RoIs smaller than one feature cell (see README).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from common.cli import script_entry  # first: a Ctrl-C during the imports below is one line

import torch

from common.files.folders import output_file_parent
from common.pipeline.sizes import check_run_size
from common.runtime.export import export_onnx, check_opset
from maskrcnn_mmdet import model
from maskrcnn_mmdet.config import INPUT_NAMES, OUTPUT_NAMES, PACK
# ONNX RoiAlign gained coordinate_transformation_mode (half_pixel = aligned=True) in opset 16.
ROI_ALIGN_HALF_PIXEL_OPSET = 16
MIN_OPSET = 11  # NonMaxSuppression, TopK with a k input, NonZero


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", metavar="[CONFIG] CHECKPOINT",
                        help="optional mmdet config path (accepted, not read) and the .pth checkpoint")
    parser.add_argument("--output-file", dest="output_file", default="maskrcnn_r50_fpn_1x.onnx",
                        help="ONNX file to write")
    parser.add_argument("--shape", type=int, nargs=2, default=(1216, 1216), metavar=("H", "W"),
                        help="model input height and width, multiples of 32 (guide: 1216 1216)")
    parser.add_argument("--opset", type=int, default=ROI_ALIGN_HALF_PIXEL_OPSET,
                        help="ONNX opset: 16+ exact RoiAlign (default); 11-15 the half-cell shift emulation")
    args = parser.parse_args(argv)
    if len(args.paths) > 2:
        parser.error("expected [CONFIG] CHECKPOINT")
    return args


def main(args: argparse.Namespace) -> int:
    output_file_parent(args.output_file)  # before the slow load and export, not after them
    checkpoint = Path(args.paths[-1])
    check_opset(args.opset, minimum=MIN_OPSET)
    legacy = args.opset < ROI_ALIGN_HALF_PIXEL_OPSET
    if legacy:
        print(f"opset {args.opset}: RoIAlign exported as RoiAlign-10 with RoIs shifted by half a cell "
              "(equal to aligned=True except for RoIs smaller than one feature cell)")
    if len(args.paths) == 2:
        print(f"config {args.paths[0]}: not read, the architecture is mask_rcnn_r50_fpn_1x_coco")
    height, width = args.shape
    check_run_size(f"--shape {height} {width}", (height, width), output_shapes=PACK.output_shapes)
    options = {"input_hw": [height, width]}
    if legacy:
        options["legacy_roi_align"] = True
    net = model.load_pretrained(checkpoint, **options)
    dummy = torch.zeros(1, 3, height, width)
    export_onnx(net, [dummy], args.output_file, input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                dynamic_batch=False, pack=PACK.name, model_options=options, opset=args.opset)
    print(f"wrote {args.output_file}: input {list(INPUT_NAMES)} [1,3,{height},{width}], "
          f"outputs {list(OUTPUT_NAMES)} [1,100,5] [1,100] [1,100,80,28,28], opset {args.opset}")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
