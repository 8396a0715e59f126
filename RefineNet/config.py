"""RefineNet (ResNet-101, VOC2012): the pack's facts and the commands of its guide steps.

Torch-free: the preprocess and postprocess import it, and so do run_pack, the bench and the
demo weights (see common/pipeline/pack_config.py for the fields).
"""
from common.pipeline.pack_config import (Metric, PackConfig, RunSize, Step, Tensor, ceil_div)

NUM_CLASSES = 21
INPUT_SIZE = 500  # the guide's square input (LongestMaxSize + centred pad)
# albumentations Normalize of the ModelZoo transform, applied to 0..255 pixels.
MEAN_RGB = (0.485, 0.456, 0.406)
STD_RGB = (0.229, 0.224, 0.225)


def output_shapes(input_hw: tuple[int, int]) -> list[tuple[int, ...]]:
    # stride-2 7x7 conv (pad 3), then stride-2 3x3 max-pool (pad 1): the logits are at 1/4, ceil twice.
    height, width = (ceil_div(ceil_div(side, 2), 2) for side in input_hw)
    return [(NUM_CLASSES, height, width)]


PACK = PackConfig(
    name="RefineNet", package="refinenet", dataset="voc",
    weights_file="RefineNet_910.pth.tar", manifest="RefineNet",
    guide=RunSize((INPUT_SIZE, INPUT_SIZE), images=4), quick=RunSize((96, 96), images=3),
    inputs=(Tensor("input"),), outputs=(Tensor("output", classes=NUM_CLASSES),),
    output_shapes=output_shapes, metric=Metric("mIoU", "miou"),
    onnx="{work}/model/RefineNet_910.onnx", bins="{work}/prepare_dataset",
    prepare=(
        Step("3.1 export to ONNX", ("RefineNet_pth2onnx.py", "--input-file", "{weights}",
                                    "--output-file", "{onnx}", "--size", "{h}"), "export"),
        Step("3.2 ATC (Ascend only)", ("-m", "common.atc", "--model", "{onnx}", "--output",
                                       "{work}/model/RefineNet_910_bs1", "--input_shape", "input:1,3,{h},{w}",
                                       "--log", "error"), "atc"),
        Step("4.2 preprocess", ("RefineNet_preprocess.py", "--root-dir", "{data}/VOCdevkit/VOC2012",
                                "--bin-dir", "{bins}", "--size", "{h}"), "preprocess"),
        Step("4.3 dataset info file", ("get_info.py", "bin", "{bins}", "{work}/refinenet_prep_bin.info", "{h}", "{w}"), "info"),
    ),
    score=(
        Step("6.1 postprocess", ("RefineNet_postprocess.py", "--val-dir", "{data}", "--result-dir", "{result}",
                                 "--save_path", "{metric}", "--show-dir", "{show}"), "postprocess"),
    ),
    infer_flags=("--batchsize", "1"),
)
