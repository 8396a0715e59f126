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

import torch

from pointrend import model
from pointrend.config import output_shapes
from common.cli import UserError, script_entry
from common.runtime.export import export_onnx
from common.files.folders import output_file_parent
from common.pipeline.sizes import check_run_size

PACK = "PointRend"
# Effective values of pointrend_semantic_R_101_FPN_1x_cityscapes.yaml with its bases.
CITYSCAPES_CONFIG = {
    "MODEL.RESNETS.DEPTH": 101,
    "MODEL.RESNETS.STRIDE_IN_1X1": True,
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES": model.NUM_CLASSES,
    "MODEL.POINT_HEAD.NUM_CLASSES": model.NUM_CLASSES,
    "MODEL.POINT_HEAD.COARSE_PRED_EACH_LAYER": False,
    "MODEL.POINT_HEAD.SUBDIVISION_STEPS": model.SUBDIVISION_STEPS,
    "MODEL.POINT_HEAD.SUBDIVISION_NUM_POINTS": model.SUBDIVISION_NUM_POINTS,
    "MODEL.PIXEL_MEAN": list(model.PIXEL_MEAN_BGR),
    "MODEL.PIXEL_STD": list(model.PIXEL_STD_BGR),
    "INPUT.FORMAT": "BGR",
    "INPUT.MIN_SIZE_TEST": model.DEFAULT_INPUT_HW[0],
    "INPUT.MAX_SIZE_TEST": model.DEFAULT_INPUT_HW[1],
}
# Values this network hard-wires: a config that says otherwise describes another model.
FIXED_KEYS = ("MODEL.RESNETS.DEPTH", "MODEL.RESNETS.STRIDE_IN_1X1",
              "MODEL.POINT_HEAD.COARSE_PRED_EACH_LAYER", "MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD",
              "INPUT.FORMAT")
MAX_BASE_DEPTH = 10


def read_config(path: str | Path | None) -> tuple[dict, list[Path]]:
    """The values of CITYSCAPES_CONFIG overridden by the file and its readable `_BASE_` chain."""
    values = dict(CITYSCAPES_CONFIG)
    if path is None or not Path(path).is_file():
        return values, []
    chain = _config_chain(Path(path))
    for config_file in reversed(chain):  # bases first, the named file last
        flat = _flatten(_load_yaml(config_file))
        values.update({key: flat[key] for key in CITYSCAPES_CONFIG if key in flat})
    _check_config(values, path)
    return values, chain


def _config_chain(path: Path) -> list[Path]:
    chain = [path]
    while len(chain) <= MAX_BASE_DEPTH:
        base = _load_yaml(chain[-1]).get("_BASE_")
        if not base:
            break
        base_path = (chain[-1].parent / str(base)).resolve()
        if not base_path.is_file():
            break  # a partial checkout: use what is there, the defaults fill the rest
        chain.append(base_path)
    return chain


def _load_yaml(path: Path) -> dict:
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not a readable YAML config ({type(err).__name__})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UserError(f"{path}: a detectron2 config must be a mapping at the top level")
    return loaded


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _check_config(values: dict, path) -> None:
    for key in FIXED_KEYS:
        wanted = CITYSCAPES_CONFIG[key]
        got = values[key]
        same = (got == wanted if not isinstance(wanted, list)
                else isinstance(got, list) and [float(v) for v in got] == [float(v) for v in wanted])
        if not same:
            raise UserError(f"{path}: {key} is {got!r}; this network implements {wanted!r}")
    if values["MODEL.SEM_SEG_HEAD.NUM_CLASSES"] != values["MODEL.POINT_HEAD.NUM_CLASSES"]:
        raise UserError(f"{path}: SEM_SEG_HEAD.NUM_CLASSES and POINT_HEAD.NUM_CLASSES differ")


def model_options(config: dict, input_hw, class_map: str | None) -> dict:
    """Constructor options of model.build_model, recorded in the ONNX metadata."""
    return {
        "num_classes": int(config["MODEL.SEM_SEG_HEAD.NUM_CLASSES"]),
        "subdivision_steps": int(config["MODEL.POINT_HEAD.SUBDIVISION_STEPS"]),
        "subdivision_num_points": int(config["MODEL.POINT_HEAD.SUBDIVISION_NUM_POINTS"]),
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
    args = parser.parse_args(argv)
    if len(args.paths) not in (2, 3):
        parser.error("expected [CONFIG.yaml] MODEL.pkl OUT.onnx")
    args.config = args.paths[0] if len(args.paths) == 3 else None
    args.checkpoint, args.output = args.paths[-2:]
    return args


def main(args: argparse.Namespace) -> int:
    output_file_parent(args.output)  # before the slow load and export, not after them
    config, chain = read_config(args.config)
    if args.config is not None and not chain:
        print(f"note: config {args.config} not found; using the Cityscapes config values")
    elif chain:
        print("config: " + " <- ".join(str(p) for p in chain))
    input_hw = args.input_size or (config["INPUT.MIN_SIZE_TEST"], config["INPUT.MAX_SIZE_TEST"])
    class_map = None if args.class_map == "none" else args.class_map
    options = model_options(config, input_hw, class_map)
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
