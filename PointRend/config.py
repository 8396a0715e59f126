"""PointRend (semantic, R-101-FPN, Cityscapes): the pack's facts and the commands of its guide steps.

Torch-free: the preprocess and postprocess import it, and so do model.py, run_pack, the bench
and the demo weights (see common/pipeline/pack_config.py for the fields).
"""
from common.cli import UserError
from common.pipeline.pack_config import Metric, PackConfig, RunSize, Step, Tensor

NUM_CLASSES = 19
# Cityscapes test size of the published model (INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST).
DEFAULT_INPUT_HW = (1024, 2048)
# detectron2 MODEL.PIXEL_MEAN / PIXEL_STD, BGR order, 0..255 scale (MSRA/C2 convention).
PIXEL_MEAN_BGR = (103.530, 116.280, 123.675)
PIXEL_STD_BGR = (1.0, 1.0, 1.0)
# res5 stride: the FPN top-down sums need every level to be exactly half the previous one.
SIZE_DIVISIBILITY = 32
# The upstream config the guide passes to the export (read when present, else its values are built in).
GUIDE_CONFIG = "detectron2/projects/PointRend/configs/SemanticSegmentation/pointrend_semantic_R_101_FPN_1x_cityscapes.yaml"


def check_input_hw(input_hw) -> tuple[int, int]:
    """Height and width must be positive multiples of 32 (the FPN's size divisibility)."""
    try:
        height, width = (int(v) for v in input_hw)
    except (TypeError, ValueError):
        raise UserError(f"input size must be two integers H W, got {input_hw!r}") from None
    if height <= 0 or width <= 0 or height % SIZE_DIVISIBILITY or width % SIZE_DIVISIBILITY:
        raise UserError(f"input size {height}x{width}: height and width must be positive "
                        f"multiples of {SIZE_DIVISIBILITY}")
    return height, width


def output_shapes(input_hw: tuple[int, int]) -> list[tuple[int, ...]]:
    # The subdivision inference ends at the input resolution (the guide's export: float logits).
    return [(NUM_CLASSES, *input_hw)]


PACK = PackConfig(
    name="PointRend", package="pointrend", dataset="cityscapes",
    weights_file="model_final_cf6ac1.pkl", manifest="PointRend",
    guide=RunSize(DEFAULT_INPUT_HW, images=2), quick=RunSize((128, 256), images=3, synthetic_hw=(128, 256)),
    inputs=(Tensor("images"),), outputs=(Tensor("results", classes=NUM_CLASSES),),
    output_shapes=output_shapes, metric=Metric("mIoU", "miou"),
    onnx="{work}/model/PointRend.onnx", bins="{work}/prep_bin",
    prepare=(
        Step("preprocess (PointRend_preprocess.py)", ("PointRend_preprocess.py", "{data}", "{bins}",
                                                     "--input-size", "{h}", "{w}"), "preprocess"),
        Step("export to ONNX (PointRend_pkl2onnx.py)", ("PointRend_pkl2onnx.py", GUIDE_CONFIG, "{weights}", "{onnx}",
                                                       "--input-size", "{h}", "{w}"), "export"),
        Step("ATC (Ascend only)", ("-m", "common.atc", "--model", "{onnx}", "--output", "{work}/model/PointRend_bs1",
                                   "--input_shape", "images:1,3,{h},{w}", "--log", "error"), "atc"),
    ),
    score=(
        Step("accuracy (PointRend_postprocess.py)", ("PointRend_postprocess.py", "{data}", "{result}",
                                                    "--save_path", "{metric}", "--show-dir", "{show}"), "postprocess"),
    ),
    infer_flags=("--outfmt", "BIN", "--batchsize", "1"),
    export_options={"uint8 class map (--class-map uint8)": ("--class-map", "uint8")},
    # Found by `common.precision` at 1024x2048 with demo weights; see the README: float16 anywhere
    # before the point head's TopK changes which points are refined.
    fp16_keep_dtype="keep_dtype_force_fp16.cfg",
)
