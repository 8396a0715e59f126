"""One entry per pack: how the benchmark drives it. Adding a pack is one `PackBench(...)` below.

An entry says, with the pack's own scripts and argument names (as in its run_pack.sh): the
checkpoint file name (demo weights are written by the pack's `write_demo_checkpoint`), the
export command(s) at a given input size per output option, the guide's input size and batch
sizes, how to write N synthetic images, the preprocess and postprocess command lines, and the
shape of each output bin (the postprocess is fed synthetic outputs of the right shape instead
of running the network on hundreds of images). A pack whose scripts are not in the
repository yet is reported as "not available yet".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from common.packs import pack_dir

HW = tuple[int, int]


@dataclass(frozen=True)
class Script:
    """A pack script (file name without .py) and its arguments."""
    name: str
    argv: list[str]


@dataclass(frozen=True)
class OutputBin:
    """One model output per image (no batch axis) and how to fill it with plausible values."""
    shape: tuple[int, ...]
    dtype: str = "float32"
    make: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray] | None = None

    def random(self, rng: np.random.Generator) -> np.ndarray:
        if self.make is not None:
            return np.ascontiguousarray(self.make(rng, self.shape), dtype=self.dtype)
        return rng.standard_normal(self.shape, dtype=np.float32).astype(self.dtype)


@dataclass(frozen=True)
class DataSet:
    """Synthetic images of `image_hw` (None: the pack's real-sized synthetic images) that the
    preprocess turns into model inputs of `input_hw`."""
    image_hw: HW | None
    input_hw: HW


@dataclass(frozen=True)
class PackBench:
    pack: str
    checkpoint_name: str                                       # the published file name
    guide_hw: HW                                               # the guide's real input size
    quick_hw: HW                                               # --quick input size
    guide_batches: tuple[int, ...]                             # the guide's batch sizes
    export: Callable[[Path, Path, HW, dict], list[Script]]     # (checkpoint, onnx, hw, option) -> commands
    output_options: dict[str, dict]                            # label -> option (the first is timed)
    write_dataset: Callable[[Path, int, HW | None], Path]      # (folder, count, image hw) -> data root
    preprocess: Callable[[Path, Path, int, HW], Script]        # (data root, bin dir, workers, input hw)
    postprocess: Callable[[Path, Path, Path, int, HW], Script]  # (data root, result dir, work, workers, input hw)
    output_bins: Callable[[HW], list[OutputBin]]               # outputs per input bin, for input size hw
    series: DataSet                                            # the 10/100/500-image series
    quick_series: DataSet
    real: DataSet | None = None                                # real-size images, when the series is not
    real_count: int = 10
    counts: tuple[int, ...] = (10, 100, 500)                   # images in the series
    inference_budget_s: float = 200.0                          # ORT + PyTorch seconds for all batch sizes
    before_postprocess: Callable[[Path, Path], list[Script]] = lambda root, work: []  # untimed set-up
    guide_ms_per_image: dict[str, float] = field(default_factory=dict)  # the guide scripts' figures
    goal_ratio: float = 1.5                                    # ONNX Runtime / PyTorch goal (issue 8)
    required: tuple[str, ...] = ()                             # files that must exist in the pack folder
    notes: str = ""

    def missing_files(self) -> list[str]:
        folder = pack_dir(self.pack)
        return [name for name in self.required if not (folder / name).is_file()]


def _ceil_quarter(side: int) -> int:
    return -(-(-(-side // 2)) // 2)  # two stride-2 steps with padding: ceil(ceil(x / 2) / 2)


def _probabilities(axis: int):
    def make(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        values = rng.random(shape, dtype=np.float32) + np.float32(1e-3)
        return values / values.sum(axis=axis, keepdims=True)
    return make


def _segmentation_logits(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """(C, h, w) logits shaped like a segmentation network's: regions of one class (blocks of
    16 x 16 output pixels) leading by a margin, with smooth noise. A postprocess whose cost
    depends on the values (3D_HRNet's upsample + argmax works harder at class boundaries) is
    then timed on something like real outputs; white noise would be its worst case."""
    import cv2
    classes, height, width = shape
    block = 16
    coarse = rng.integers(0, classes, size=(-(-height // block), -(-width // block)), dtype=np.int64)
    regions = np.kron(coarse, np.ones((block, block), dtype=np.int64))[:height, :width]
    one_hot = (np.arange(classes)[:, None, None] == regions[None]).astype(np.float32)
    coarse_noise = rng.standard_normal((height // 8 + 1, width // 8 + 1, classes), dtype=np.float32)
    noise = cv2.resize(coarse_noise, (width, height), interpolation=cv2.INTER_LINEAR).reshape(height, width, classes)
    return 4.0 * one_hot + noise.transpose(2, 0, 1)


# ---- datasets --------------------------------------------------------------------------------

def _voc_dataset(folder: Path, count: int, image_hw: HW | None) -> Path:
    from common.synth import VOC_DEFAULT_SIZES_HW, write_synthetic_voc
    write_synthetic_voc(folder, count=count, sizes_hw=[image_hw] if image_hw else VOC_DEFAULT_SIZES_HW)
    return folder


def _cityscapes_dataset(folder: Path, count: int, image_hw: HW | None) -> Path:
    from common.synth import write_synthetic_cityscapes
    write_synthetic_cityscapes(folder, count=count, size_hw=image_hw or (1024, 2048))
    return folder


def _coco_dataset(folder: Path, count: int, image_hw: HW | None) -> Path:
    from common.synth import write_synthetic_coco
    sizes = [image_hw] if image_hw else [(480, 640), (427, 640), (640, 480), (375, 500)]  # val2017-like
    write_synthetic_coco(folder / "coco", count=count, sizes_hw=sizes)
    return folder


def _voc_val_list(root: Path) -> Path:
    return root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt"


# ---- RefineNet (VOC2012, 500x500, bs1 and bs16) ---------------------------------------------

REFINENET = PackBench(
    pack="RefineNet", checkpoint_name="RefineNet_910.pth.tar", guide_hw=(500, 500), quick_hw=(96, 96),
    guide_batches=(1, 16),
    export=lambda ckpt, onnx, hw, option: [Script("RefineNet_pth2onnx", [
        "--input-file", str(ckpt), "--output-file", str(onnx), "--size", str(hw[0])])],
    output_options={"float32 logits": {}},
    write_dataset=_voc_dataset,
    preprocess=lambda root, bins, workers, hw: Script("RefineNet_preprocess", [
        "--root-dir", str(root / "VOCdevkit" / "VOC2012"), "--bin-dir", str(bins), "--size", str(hw[0]),
        "--workers", str(workers)]),
    postprocess=lambda root, result, work, workers, hw: Script("RefineNet_postprocess", [
        "--val-dir", str(root), "--result-dir", str(result), "--save_path", str(work / "miou.json"),
        "--size", str(hw[0]), "--workers", str(workers)]),
    output_bins=lambda hw: [OutputBin((21, _ceil_quarter(hw[0]), _ceil_quarter(hw[1])))],
    series=DataSet(None, (500, 500)), quick_series=DataSet(None, (500, 500)),
    guide_ms_per_image={"preprocess": 22.0, "postprocess": 118.0}, goal_ratio=1.5, inference_budget_s=300.0,
    required=("model.py", "RefineNet_pth2onnx.py", "RefineNet_preprocess.py", "RefineNet_postprocess.py"),
    notes="Synthetic images have VOC's sizes (mostly long side 500; some 640x480 and 320x240) at every count.",
)


# ---- 3D_HRNet (Cityscapes, 1024x2048, bs1 and bs4) -------------------------------------------

HRNET = PackBench(
    pack="3D_HRNet", checkpoint_name="hrnet.pth", guide_hw=(1024, 2048), quick_hw=(64, 128),
    guide_batches=(1, 4),
    export=lambda ckpt, onnx, hw, option: [Script("HRNet_pth2onnx", [
        "--pth", str(ckpt), "--save_path", str(onnx), "--input_hw", str(hw[0]), str(hw[1])])],
    output_options={"float32 logits, aux + OCR heads": {}},
    write_dataset=_cityscapes_dataset,
    preprocess=lambda root, bins, workers, hw: Script("HRNet_preprocess", [
        "--src_path", str(root), "--save_path", str(bins), "--workers", str(workers)]),
    postprocess=lambda root, result, work, workers, hw: Script("HRNet_postprocess", [
        "--res_path", str(result), "--data_path", str(root / "cityscapes" / "gtFine" / "val"),
        "--save_path", str(work / "miou.json"), "--workers", str(workers)]),
    output_bins=lambda hw: [OutputBin((19, _ceil_quarter(hw[0]), _ceil_quarter(hw[1])), make=_segmentation_logits)] * 2,
    series=DataSet((128, 256), (128, 256)), quick_series=DataSet((64, 128), (64, 128)),
    real=DataSet((1024, 2048), (1024, 2048)), real_count=10,
    guide_ms_per_image={"preprocess": 180.0, "postprocess": 527.0}, goal_ratio=1.5,
    required=("model.py", "HRNet_pth2onnx.py", "HRNet_preprocess.py", "HRNet_postprocess.py"),
    notes="The 10/100/500 series uses 128x256 synthetic images (memory flatness, not the guide's size); "
          "the per-image speed compared with the guide comes from 10 real-size 1024x2048 images.",
)


# ---- PointRend (Cityscapes, 1024x2048, bs1) --------------------------------------------------

def _pointrend_export(ckpt: Path, onnx: Path, hw: HW, option: dict) -> list[Script]:
    extra = ["--class_map", option["class_map"]] if option.get("class_map") else []
    return [Script("PointRend_pkl2onnx", [str(ckpt), str(onnx), "--input_size", str(hw[0]), str(hw[1]), *extra])]


POINTREND = PackBench(
    pack="PointRend", checkpoint_name="model_final_cf6ac1.pkl", guide_hw=(1024, 2048), quick_hw=(128, 256),
    guide_batches=(1,), export=_pointrend_export,
    output_options={"float32 logits (the guide)": {}, "uint8 class map (--class_map uint8)": {"class_map": "uint8"}},
    write_dataset=_cityscapes_dataset,
    preprocess=lambda root, bins, workers, hw: Script("PointRend_preprocess", [
        str(root), str(bins), "--input_size", str(hw[0]), str(hw[1]), "--workers", str(workers)]),
    postprocess=lambda root, result, work, workers, hw: Script("PointRend_postprocess", [
        str(root), str(result), "--save_path", str(work / "miou.json"), "--workers", str(workers)]),
    output_bins=lambda hw: [OutputBin((19, hw[0], hw[1]))],
    series=DataSet((128, 256), (128, 256)), quick_series=DataSet((64, 128), (64, 128)),
    real=DataSet((1024, 2048), (1024, 2048)), real_count=10, goal_ratio=1.2,
    required=("model.py", "PointRend_pkl2onnx.py", "PointRend_preprocess.py", "PointRend_postprocess.py"),
    notes="The 10/100/500 series uses 128x256 synthetic images; the real-size row uses 10 images of "
          "1024x2048 with float32 logits outputs (159 MB per image, as the guide's export).",
)


# ---- Wseg (VOC2012, 8 inputs of 1024x1024 per image, bs1) ------------------------------------

def _wseg_export(ckpt: Path, onnx: Path, hw: HW, option: dict) -> list[Script]:
    raw = onnx.with_name(onnx.stem + "_unfixed.onnx")
    extra = ["--lean-mask"] if option.get("lean_mask") else []
    return [Script("wseg_pth2onnx", [str(ckpt), str(raw), "--input-size", str(hw[0]), *extra]),
            Script("fix_softmax_transpose", [str(raw), str(onnx)])]


def _wseg_outputs(hw: HW) -> list[OutputBin]:
    return [OutputBin((20,)), OutputBin((21, hw[0], hw[1]), make=_probabilities(0))]


WSEG = PackBench(
    pack="Wseg", checkpoint_name="model_enc_e020Xs0.928.pth", guide_hw=(1024, 1024), quick_hw=(128, 128),
    guide_batches=(1,), export=_wseg_export,
    output_options={"float32 cls + full-size mask (the guide)": {}, "lean mask (--lean-mask, 1/4 size)": {"lean_mask": True}},
    write_dataset=_voc_dataset,
    preprocess=lambda root, bins, workers, hw: Script("wseg_preprocess", [
        str(root), str(_voc_val_list(root)), str(bins), "--pad-size", str(hw[0]), "--workers", str(workers)]),
    postprocess=lambda root, result, work, workers, hw: Script("wseg_postprocess", [
        str(root), str(_voc_val_list(root)), str(result), str(work / "masks"), "--workers", str(workers)]),
    output_bins=_wseg_outputs,
    series=DataSet((24, 32), (64, 64)), quick_series=DataSet((24, 32), (64, 64)),
    real=DataSet(None, (1024, 1024)), real_count=2, goal_ratio=1.5,
    required=("model.py", "wseg_pth2onnx.py", "fix_softmax_transpose.py", "wseg_preprocess.py", "wseg_postprocess.py"),
    notes="One image is 8 network inputs (4 scales x flip), so per-image figures cover 8 bins. The series "
          "uses 24x32 images padded to 64 (memory flatness); the real-size row uses 2 VOC-sized images "
          "padded to 1024 (8 x 88 MB of mask outputs per image). The postprocess includes the dense CRF "
          "when pydensecrf is importable.",
)


# ---- MaskRCNN_mmdet (COCO val2017, 1216x1216, bs1) -------------------------------------------

def _maskrcnn_export(ckpt: Path, onnx: Path, hw: HW, option: dict) -> list[Script]:
    scripts = [Script("mmdet_pth2onnx", [str(ckpt), "--output-file", str(onnx), "--shape", str(hw[0]), str(hw[1])])]
    if option.get("labels_int32"):
        scripts.append(Script("label_to_int32", [str(onnx)]))
    return scripts


def _detections(canvas_hw: HW):
    def make(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        count = shape[0]
        x1 = rng.uniform(0, canvas_hw[1] * 0.8, count)
        y1 = rng.uniform(0, canvas_hw[0] * 0.8, count)
        w = rng.uniform(8, canvas_hw[1] * 0.2, count)
        h = rng.uniform(8, canvas_hw[0] * 0.2, count)
        score = np.sort(rng.uniform(0.05, 1.0, count))[::-1]
        return np.stack([x1, y1, x1 + w, y1 + h, score], axis=1)
    return make


def _maskrcnn_outputs(hw: HW) -> list[OutputBin]:
    return [OutputBin((100, 5), make=_detections(hw)),
            OutputBin((100,), "int32", make=lambda rng, shape: rng.integers(0, 80, size=shape)),
            OutputBin((100, 80, 28, 28), make=lambda rng, shape: rng.random(shape, dtype=np.float32))]


MASKRCNN = PackBench(
    pack="MaskRCNN_mmdet", checkpoint_name="mask_rcnn_r50_fpn_1x_coco_20200205-d4b0c5d6.pth",
    guide_hw=(1216, 1216), quick_hw=(128, 128), guide_batches=(1,), export=_maskrcnn_export,
    output_options={"as the guide (labels int32 after label_to_int32.py)": {"labels_int32": True},
                    "export only (labels int64)": {}},
    write_dataset=_coco_dataset,
    preprocess=lambda root, bins, workers, hw: Script("mmdet_preprocess", [
        f"--image_src_path={root / 'coco' / 'val2017'}", f"--bin_file_path={bins}",
        f"--model_input_height={hw[0]}", f"--model_input_width={hw[1]}", "--workers", str(workers)]),
    before_postprocess=lambda root, work: [Script("get_info", ["jpg", str(root / "coco" / "val2017"),
                                                               str(work / "val2017_jpg.info")])],
    postprocess=lambda root, result, work, workers, hw: Script("mmdet_postprocess", [
        f"--bin_data_path={result}", f"--test_annotation={work / 'val2017_jpg.info'}",
        f"--val2017_json_path={root / 'coco' / 'annotations' / 'instances_val2017.json'}",
        f"--det_results_path={work / 'det'}", "--net_out_num=3", f"--net_input_height={hw[0]}",
        f"--net_input_width={hw[1]}", f"--save_path={work / 'metrics.json'}", "--workers", str(workers)]),
    output_bins=_maskrcnn_outputs,
    series=DataSet((120, 160), (128, 128)), quick_series=DataSet((120, 160), (128, 128)),
    real=DataSet(None, (1216, 1216)), real_count=10, counts=(10, 100, 250), goal_ratio=1.2,
    required=("model.py", "mmdet_pth2onnx.py", "label_to_int32.py", "mmdet_preprocess.py",
              "mmdet_postprocess.py", "get_info.py"),
    notes="The series uses 120x160 images on a 128x128 canvas and stops at 250 images (every image's "
          "outputs take 25 MB, mostly the 100x80x28x28 mask probabilities); the real-size row uses 10 val2017-sized "
          "images on the guide's 1216x1216 canvas. Postprocess outputs are random detections "
          "(100 boxes with scores, labels, 80x28x28 mask probabilities), scored with COCOeval.",
)


PACK_BENCHES: dict[str, PackBench] = {entry.pack: entry for entry in (REFINENET, HRNET, POINTREND, WSEG, MASKRCNN)}
