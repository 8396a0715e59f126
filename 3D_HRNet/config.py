"""3D_HRNet (HRNetV2-W48 + OCR, Cityscapes): the pack's facts and the commands of its guide steps.

Torch-free: the preprocess and postprocess import it, and so do run_pack, the bench and the
demo weights (see common/pipeline/pack_config.py for the fields).
"""
from common.pipeline.pack_config import Metric, PackConfig, RunSize, Step, Tensor, ceil_div

NUM_CLASSES = 19
INPUT_HW = (1024, 2048)  # whole Cityscapes frames: the test path neither resizes nor crops
# ImageNet statistics of upstream `BaseDataset` (RGB order, on 0..1 pixels). Python floats on
# purpose: upstream subtracts and divides with lists, so numpy computes each step in float64
# and rounds back into the float32 array; doing the same reproduces its bins bit for bit.
MEAN_RGB = [0.485, 0.456, 0.406]
STD_RGB = [0.229, 0.224, 0.225]
OUTPUT_NAMES = ("output1", "output2")  # aux head, OCR head (the guide scores the OCR head)


def output_shapes(input_hw: tuple[int, int]) -> list[tuple[int, ...]]:
    # two stride-2 3x3 convs with padding 1 in the stem: both heads at 1/4, ceil twice.
    height, width = (ceil_div(ceil_div(side, 2), 2) for side in input_hw)
    return [(NUM_CLASSES, height, width)] * len(OUTPUT_NAMES)


_INFER = ("-m", "common.infer", "--input", "{bins}", "--output", "{work}/result", "--outfmt", "BIN", "--batchsize", "1")
_LABELS = "{data}/cityscapes/gtFine/val/"

PACK = PackConfig(
    name="3D_HRNet", package="hrnet3d", dataset="cityscapes",
    weights_file="hrnet.pth", manifest="3D_HRNet",
    guide=RunSize(INPUT_HW, images=1), quick=RunSize((64, 128), images=3, synthetic_hw=(64, 128)),
    inputs=(Tensor("image"),), outputs=tuple(Tensor(name, classes=NUM_CLASSES) for name in OUTPUT_NAMES),
    output_shapes=output_shapes, metric=Metric("mIoU", "value.mean_Iou"),
    onnx="{work}/model/hrnet.onnx", bins="{work}/prep_dataset",
    prepare=(
        Step("prepare dataset: preprocess", ("HRNet_preprocess.py", "--src_path={data}", "--save_path={bins}"), "preprocess"),
        Step("1.2 export to ONNX", ("HRNet_pth2onnx.py", "--pth", "{weights}", "--save_path", "{onnx}",
                                    "--input-hw", "{h}", "{w}"), "export"),
        Step("1.2 optimise the ONNX: the guide's Resize edit, into a second file",
             ("performance_optimize_resize.py", "{onnx}", "{work}/model/hrnet_nearest.onnx"), "fix"),
        Step("1.3 ATC (Ascend only)", ("-m", "common.atc", "--model", "{work}/model/hrnet_nearest.onnx",
                                       "--output", "{work}/model/hrnet_bs1", "--input_shape", "image:1,3,{h},{w}",
                                       "--out-nodes-from-outputs", "--log", "error"), "atc"),
    ),
    score=(
        Step("2.3 postprocess", ("HRNet_postprocess.py", "--res_path", "{result}", "--data_path", _LABELS,
                                 "--save_path", "{metric}", "--show-dir", "{show}"), "postprocess"),
    ),
    extra=(
        Step("the Resize edit: inference on the edited graph",
             (*_INFER, "--model", "{work}/model/hrnet_nearest.onnx", "--output_dirname", "onnxruntime_nearest"), "compare"),
        Step("the Resize edit: postprocess", ("HRNet_postprocess.py", "--res_path", "{work}/result/onnxruntime_nearest",
                                              "--data_path", _LABELS,
                                              "--save_path", "{work}/metric_onnxruntime_nearest.json",
                                              "--show-dir", "{work}/show/onnxruntime_nearest"), "compare"),
        Step("the Resize edit: what it changes", (
            "resize_edit_report.py", "--reference", "{result}", "--candidate", "{work}/result/onnxruntime_nearest",
            "--reference-metric", "{metric}", "--candidate-metric", "{work}/metric_onnxruntime_nearest.json",
            "--save_path", "{work}/resize_edit.json"), "compare"),
    ),
    infer_flags=("--outfmt", "BIN", "--batchsize", "1"),
    quick_real_images="to_input",
)
