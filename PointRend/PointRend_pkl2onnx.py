"""Guide step "模型转换 / 导出onnx文件": model_final_cf6ac1.pkl -> ONNX (opset 11).

    python3 PointRend_pkl2onnx.py [CONFIG.yaml] MODEL.pkl OUT.onnx [--input-size H W] [--class-map uint8]

Input `images` [batch, 3, 1024, 2048] (normalised BGR, see PointRend_preprocess.py); output
`results` [batch, 19, 1024, 2048] float32 logits, or with `--class-map uint8|int32` the argmax
computed in the graph, `class_map` [batch, 1024, 2048] (2 MB instead of 159 MB per image).

The detectron2 config argument is accepted so the guide's command line works as written. When
the file exists, the values that matter (subdivision steps and points, test size, classes)
are read from it and its `_BASE_` chain and checked against what this network implements; a
missing file (no detectron2 checkout) means the Cityscapes config's values.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from common.cli import script_entry  # first: a Ctrl-C during the imports below is one line

import torch

from pointrend import model
from pointrend.config import output_shapes
from common.runtime.export import export_onnx
from common.files.folders import output_file_parent
from common.pipeline.sizes import check_run_size
from common.files.config_reader import Setting, check_flag, read_guide_config

PACK = "PointRend"
# The settings of pointrend_semantic_R_101_FPN_1x_cityscapes.yaml (with its bases) that this
# network depends on; defaults are that config's values.
CONFIG_SETTINGS = (
    Setting("MODEL.RESNETS.DEPTH", "int", fixed=101),
    Setting("MODEL.RESNETS.STRIDE_IN_1X1", "bool", fixed=True),
    Setting("MODEL.SEM_SEG_HEAD.NUM_CLASSES", "int", minimum=1, fixed=model.NUM_CLASSES,
            reason="the Cityscapes classes the postprocess scores"),
    Setting("MODEL.POINT_HEAD.NUM_CLASSES", "int", minimum=1, fixed=model.NUM_CLASSES,
            reason="the Cityscapes classes the postprocess scores"),
    Setting("MODEL.POINT_HEAD.COARSE_PRED_EACH_LAYER", "bool", fixed=False),
    Setting("MODEL.POINT_HEAD.SUBDIVISION_STEPS", "int", minimum=1, fixed=model.SUBDIVISION_STEPS,
            reason="the coarse logits are at 1/4 of the input and each step doubles them"),
    Setting("MODEL.POINT_HEAD.SUBDIVISION_NUM_POINTS", "int", model.SUBDIVISION_NUM_POINTS, minimum=1),
    Setting("MODEL.PIXEL_MEAN", "float", length=3, fixed=tuple(model.PIXEL_MEAN_BGR)),
    Setting("MODEL.PIXEL_STD", "float", length=3, fixed=tuple(model.PIXEL_STD_BGR)),
    Setting("INPUT.FORMAT", "str", fixed="BGR"),
    Setting("INPUT.MIN_SIZE_TEST", "int", model.DEFAULT_INPUT_HW[0], minimum=32, multiple_of=32),
    Setting("INPUT.MAX_SIZE_TEST", "int", model.DEFAULT_INPUT_HW[1], minimum=32, multiple_of=32),
)


def read_config(path: str | Path | None) -> tuple[dict, list[Path]]:
    """The settings from the file and its readable `_BASE_` chain (defaults where absent);
    a missing file means the Cityscapes config's values."""
    return read_guide_config(path, CONFIG_SETTINGS, "detectron2")


def model_options(config: dict, input_hw, class_map: str | None, point_sampler: str = "exact") -> dict:
    """Constructor options of model.build_model, recorded in the ONNX metadata."""
    return {
        "point_sampler": point_sampler,
        "num_classes": config["MODEL.SEM_SEG_HEAD.NUM_CLASSES"],
        "subdivision_steps": config["MODEL.POINT_HEAD.SUBDIVISION_STEPS"],
        "subdivision_num_points": config["MODEL.POINT_HEAD.SUBDIVISION_NUM_POINTS"],
        "class_map_dtype": class_map,
        "input_hw": list(model.check_input_hw(input_hw)),
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        usage="%(prog)s [-h] [CONFIG.yaml] MODEL.pkl OUT.onnx [options]")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="[CONFIG.yaml] MODEL.pkl OUT.onnx (config optional)")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        default=None, help="input height and width, multiples of 32 "
                        "(default: the config's MIN_SIZE_TEST MAX_SIZE_TEST, 1024 2048)")
    parser.add_argument("--class-map", choices=("none", "uint8", "int32"),
                        default="none", help="append argmax in the graph and output class ids "
                        "of this dtype instead of float logits (default: none)")
    parser.add_argument("--static-batch", type=int, default=None,
                        help="fix the batch size instead of a dynamic batch axis")
    parser.add_argument("--point-sampler", choices=model.POINT_SAMPLER_ARITHMETIC,
                        default="exact", help="arithmetic of the point sampler in the graph: 'exact' "
                        "(grid_sample's float32 FMA steps, emulated with float64 ops) or 'float32' "
                        "(no float64; about 30%% of sampled values differ in the last bits; for converters "
                        "without float64, e.g. ATC) (default: exact)")
    args = parser.parse_args(argv)
    if len(args.paths) not in (2, 3):
        parser.error("expected [CONFIG.yaml] MODEL.pkl OUT.onnx")
    args.config = args.paths[0] if len(args.paths) == 3 else None
    args.checkpoint, args.output = args.paths[-2:]
    return args


def main(args: argparse.Namespace) -> int:
    output_file_parent(args.output)  # before the slow load and export, not after them
    if args.static_batch is not None:
        check_flag("--static-batch", args.static_batch, minimum=1)
    config, chain = read_config(args.config)
    if chain:
        print("config: " + " <- ".join(str(p) for p in chain))
    input_hw = args.input_size or (config["INPUT.MIN_SIZE_TEST"], config["INPUT.MAX_SIZE_TEST"])
    class_map = None if args.class_map == "none" else args.class_map
    options = model_options(config, input_hw, class_map, args.point_sampler)
    check_run_size(f"--input-size {options['input_hw'][0]} {options['input_hw'][1]}", options["input_hw"],
                   output_shapes=output_shapes)
    network = model.load_pretrained(args.checkpoint, **options)
    height, width = options["input_hw"]
    dummy = torch.randn(args.static_batch or 1, 3, height, width,
                        generator=torch.Generator().manual_seed(0))
    output_name = "results" if class_map is None else "class_map"
    export_onnx(network, [dummy], args.output, input_names=["images"], output_names=[output_name],
                dynamic_batch=args.static_batch is None, pack=PACK, model_options=options)
    shape, dtype = model.output_spec((height, width), class_map, options["num_classes"])
    batch = "batch" if args.static_batch is None else args.static_batch
    print(f"wrote {args.output}: input 'images' [{batch},3,{height},{width}] float32 -> "
          f"output '{output_name}' [{batch},{','.join(map(str, shape))}] {dtype}; "
          f"{options['subdivision_steps']} subdivision steps x "
          f"{options['subdivision_num_points']} points")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
