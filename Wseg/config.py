"""Wseg (1-stage-wseg, WideResNet38, VOC2012): the pack's facts and the commands of its guide steps.

Torch-free: the preprocess and postprocess import it, and so do run_pack, the bench and the
demo weights (see common/pipeline/pack_config.py for the fields).
"""
from common.pipeline.pack_config import Metric, PackConfig, RunSize, Step, Tensor

NUM_CLASSES = 21  # background + 20 VOC classes
SCALES = (1.0, 0.5, 1.5, 2.0)  # TEST.SCALES of voc_resnet38.yaml
VARIANTS = tuple((scale, flip) for scale in SCALES for flip in (False, True))  # input k = 0..7
DEFAULT_PAD_SIZE = 1024  # TEST.PAD_SIZE
# ImageNet statistics on 0..1 pixels, evaluated in float64 as upstream.
MEAN_RGB = (0.485, 0.456, 0.406)
STD_RGB = (0.229, 0.224, 0.225)
INPUT_NAMES = ("image",)
META_NAME = "wseg_preprocess_meta.json"  # the pads and sizes of every image's 8 inputs
OUTPUT_NAMES = ("cls", "mask")
# The upstream config the guide passes to the export (read when present, else its values are built in).
GUIDE_CONFIG = "./wseg/configs/voc_resnet38.yaml"


def output_shapes(input_hw: tuple[int, int]) -> list[tuple[int, ...]]:
    # Class scores of the 20 foreground classes, and the full-size masks of all 21 (--lean-mask:
    # see model.lean_mask_size).
    return [(NUM_CLASSES - 1,), (NUM_CLASSES, *input_hw)]


_VAL_LIST = "{data}/VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"

PACK = PackConfig(
    name="Wseg", package="wseg", dataset="voc",
    weights_file="model_enc_e020Xs0.928.pth", manifest="Wseg",
    guide=RunSize((DEFAULT_PAD_SIZE, DEFAULT_PAD_SIZE), images=1), quick=RunSize((128, 128), images=2, synthetic_hw=(48, 64)),
    inputs=(Tensor("image"),), outputs=(Tensor("cls"), Tensor("mask", classes=NUM_CLASSES)),
    output_shapes=output_shapes, metric=Metric("mIoU (CRF)", "miou"),
    onnx="{work}/model/wideresnet_dybs_fix.onnx", bins="{work}/prep_data",
    prepare=(
        Step("preprocess (wseg_preprocess.py)", ("wseg_preprocess.py", "{data}", _VAL_LIST, "{bins}",
                                                "--pad-size", "{h}"), "preprocess"),
        Step("export to ONNX (wseg_pth2onnx.py)", ("wseg_pth2onnx.py", GUIDE_CONFIG, "{weights}", "{work}/model/wideresnet_dybs.onnx",
                                                  "--input-size", "{h}"), "export"),
        Step("graph fix (fix_softmax_transpose.py)", ("fix_softmax_transpose.py", "{work}/model/wideresnet_dybs.onnx",
                                                     "{onnx}"), "fix"),
        Step("ATC (Ascend only)", ("-m", "common.atc", "--model", "{onnx}", "--output", "{work}/model/wideresnet_bs1",
                                   "--input_shape", "image:1,3,{h},{w}", "--log", "error"), "atc"),
    ),
    score=(
        Step("postprocess (wseg_postprocess.py)", ("wseg_postprocess.py", "{data}", _VAL_LIST, "{result}",
                                                  "{work}/output/{tag}", "--show-dir", "{show}"), "postprocess"),
        Step("accuracy without CRF (eval_seg.py)", ("eval_seg.py", "--data", "{data}", "--filelist", _VAL_LIST,
                                                   "--masks", "{work}/output/{tag}",
                                                   "--save_path", "{work}/metric_{tag}_raw.json"), "postprocess"),
        Step("accuracy with CRF (eval_seg.py)", ("eval_seg.py", "--data", "{data}", "--filelist", _VAL_LIST,
                                                "--masks", "{work}/output/{tag}/crf", "--save_path", "{metric}"),
             "postprocess"),
    ),
    infer_flags=("--outfmt", "BIN", "--batchsize", "1"),
    inputs_per_image=len(VARIANTS),
    quick_real_images="half_input",
    export_options={"lean mask (--lean-mask, 1/4 size)": ("--lean-mask",)},
)
