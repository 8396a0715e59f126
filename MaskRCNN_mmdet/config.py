"""MaskRCNN_mmdet (Mask R-CNN R50-FPN, mmdet 2.x, COCO): the pack's facts and the commands of its
guide steps.

Torch-free: the preprocess and postprocess import it, and so do model.py, run_pack, the bench
and the demo weights (see common/pipeline/pack_config.py for the fields).
"""
from common.pipeline.pack_config import Metric, PackConfig, RunSize, Step, Tensor

NUM_CLASSES = 80
# mmdet 2.8 Normalize (RGB order) used by the preprocess; kept with the model as its contract.
PIXEL_MEAN_RGB = (123.675, 116.28, 103.53)
PIXEL_STD_RGB = (58.395, 57.12, 57.375)
SIZE_DIVISOR = 32
# test_cfg.rcnn.max_per_img: the fixed number of output rows (padded when fewer are found)
MAX_PER_IMG = 100
# mask head output: one MASK_SIZE x MASK_SIZE map per class and detection
MASK_SIZE = 28
INPUT_NAMES = ("input",)
OUTPUT_NAMES = ("boxes", "labels", "masks")
# The upstream config the guide passes to the export (the architecture is built in; not read).
GUIDE_CONFIG = "configs/mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py"


def output_shapes(input_hw: tuple[int, int]) -> list[tuple[int, ...]]:
    # Per image; the graph's outputs add a leading batch axis of 1 (the export is static).
    # The sizes do not depend on the input size.
    return [(MAX_PER_IMG, 5), (MAX_PER_IMG,), (MAX_PER_IMG, NUM_CLASSES, MASK_SIZE, MASK_SIZE)]


_COCO = "{data}/coco"

PACK = PackConfig(
    name="MaskRCNN_mmdet", package="maskrcnn_mmdet", dataset="coco",
    weights_file="mask_rcnn_r50_fpn_1x_coco_20200205-d4b0c5d6.pth", manifest="MaskRCNN_mmdet",
    guide=RunSize((1216, 1216), images=3), quick=RunSize((128, 128), images=3),
    inputs=(Tensor("input"),), outputs=(Tensor("boxes"), Tensor("labels", "int32"), Tensor("masks")),
    output_shapes=output_shapes, metric=Metric("bbox mAP", "bbox.AP"),
    onnx="{work}/model/maskrcnn_r50_fpn_1x.onnx", bins="{work}/val2017_bin",
    prepare=(
        Step("数据预处理 (preprocess)", ("mmdet_preprocess.py", f"--image_src_path={_COCO}/val2017",
                                    "--bin_file_path={bins}", "--model_input_height={h}",
                                    "--model_input_width={w}"), "preprocess"),
        Step("导出onnx (export)", ("mmdet_pth2onnx.py", GUIDE_CONFIG, "{weights}", "--output-file", "{onnx}",
                                 "--shape", "{h}", "{w}"), "export"),
        Step("labels output to int32", ("label_to_int32.py", "{onnx}"), "fix"),
        Step("ATC (Ascend only)", ("-m", "common.atc", "--model", "{onnx}", "--output",
                                   "{work}/model/maskrcnn_r50_fpn_1x", "--input_shape", "input:1,3,{h},{w}",
                                   "--log", "info"), "atc"),
        Step("image list (get_info.py)", ("get_info.py", "jpg", f"{_COCO}/val2017", "{work}/val2017_jpg.info"), "info"),
    ),
    score=(
        Step("精度验证 (postprocess)", ("mmdet_postprocess.py", "--bin_data_path={result}",
                                   "--test_annotation={work}/val2017_jpg.info",
                                   f"--val2017_json_path={_COCO}/annotations/instances_val2017.json",
                                   "--det_results_path={work}/det_{tag}", "--net_out_num=3",
                                   "--net_input_height={h}", "--net_input_width={w}", "--save_path", "{metric}", "--ifShowDetObj"),
             "postprocess"),
    ),
    infer_flags=("--batchsize", "1"),
    compare="detections",
    fp16_flags=("--class-outputs", "none"),
    # Found by `common.precision` at 1216x1216 with demo weights; see the README: the box
    # arithmetic passes 65504 (/Mul_16) and float16 reorders the RPN's TopKs.
    fp16_keep_dtype="keep_dtype_force_fp16.cfg",
)
