"""One entry per pack: how the benchmark drives it, beyond what the pack's config already says.

The pack facts and the command of every step (checkpoint file name, input sizes, export, graph
fixes, preprocess, postprocess, output shapes) come from `<Pack>/config.py`, rendered here for
the benchmark's own folders. An entry adds only what is particular to benchmarking: how to fill
output bins with plausible values, the image series, the guide's per-image figures and goals.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from common.pipeline.pack_config import PackConfig, Step, StepValues, render
from common.pipeline.packs import pack_config

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
    guide_batches: tuple[int, ...]                             # the guide's batch sizes
    write_dataset: Callable[[Path, int, HW | None], Path]      # (folder, count, image hw) -> data root
    fill: tuple[Callable | None, ...]                          # per output: plausible values (None: normal)
    series: DataSet                                            # the 10/100/500-image series
    quick_series: DataSet
    real: DataSet | None = None                                # real-size images, when the series is not
    real_count: int = 10
    counts: tuple[int, ...] = (10, 100, 500)                   # images in the series
    inference_budget_s: float = 200.0                          # ORT + PyTorch seconds for all batch sizes
    guide_ms_per_image: dict[str, float] = field(default_factory=dict)  # the guide scripts' figures
    goal_ratio: float = 1.5                                    # ONNX Runtime / PyTorch goal
    notes: str = ""

    @property
    def config(self) -> PackConfig:
        return pack_config(self.pack)

    @property
    def checkpoint_name(self) -> str:
        return self.config.weights_file

    @property
    def guide_hw(self) -> HW:
        return self.config.guide.input_hw

    @property
    def quick_hw(self) -> HW:
        return self.config.quick.input_hw

    @property
    def output_options(self) -> dict[str, tuple[str, ...]]:
        """label -> extra export flags; the first, the guide's export, is the one timed."""
        return {"as the guide": (), **self.config.export_options}

    def fields(self, root: Path, work: Path, hw: HW, **overrides: str) -> dict[str, str]:
        values = StepValues(py="python3", work=str(work), data=str(root), weights="", input_hw=hw, count=0,
                            tag="bench").fields(self.config)
        return {**values, **{key: str(value) for key, value in overrides.items()}}

    def export(self, checkpoint: Path, onnx: Path, hw: HW, extra_flags: tuple[str, ...]) -> list[Script]:
        """The export step (with the option's flags) and the graph fixes that write the graph run."""
        fields = self.fields(Path("."), onnx.parent.parent, hw, weights=checkpoint, onnx=onnx)
        steps = [self.config.steps_of("export")[0]]
        steps += [step for step in self.config.steps_of("fix") if step.argv[-1] == "{onnx}"]
        scripts = [_script(step, fields) for step in steps]
        scripts[0] = Script(scripts[0].name, [*scripts[0].argv, *extra_flags])
        return scripts

    def preprocess(self, root: Path, bins: Path, workers: int, hw: HW) -> Script:
        step = self.config.steps_of("preprocess")[0]
        return _script(step, self.fields(root, bins.parent, hw, bins=bins), "--workers", str(workers))

    def before_postprocess(self, root: Path, work: Path, hw: HW) -> list[Script]:
        """Untimed set-up the postprocess reads (the guide's image list)."""
        return [_script(step, self.fields(root, work, hw)) for step in self.config.steps_of("info")]

    def postprocess(self, root: Path, result: Path, work: Path, workers: int, hw: HW) -> Script:
        step = self.config.steps_of("postprocess")[0]
        fields = self.fields(root, work, hw, result=result, metric=work / "metric.json")
        return _script(step, fields, "--workers", str(workers))

    def output_bins(self, hw: HW) -> list[OutputBin]:
        shapes = self.config.output_shapes(hw)
        outputs = self.config.outputs
        return [OutputBin(shape, tensor.dtype, make) for shape, tensor, make in zip(shapes, outputs, self.fill)]


def _script(step: Step, fields: dict[str, str], *extra: str) -> Script:
    argv = render(step.argv, fields)
    if not argv[0].endswith(".py"):
        raise ValueError(f"step {step.title!r} is not a pack script")
    return Script(argv[0][:-3], [*argv[1:], *extra])


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
    from common.data.synth.voc import VOC_DEFAULT_SIZES_HW, write_synthetic_voc
    write_synthetic_voc(folder, count=count, sizes_hw=[image_hw] if image_hw else VOC_DEFAULT_SIZES_HW)
    return folder


def _cityscapes_dataset(folder: Path, count: int, image_hw: HW | None) -> Path:
    from common.data.synth.cityscapes import write_synthetic_cityscapes
    write_synthetic_cityscapes(folder, count=count, size_hw=image_hw or (1024, 2048))
    return folder


def _coco_dataset(folder: Path, count: int, image_hw: HW | None) -> Path:
    from common.data.synth.coco import write_synthetic_coco
    sizes = [image_hw] if image_hw else [(480, 640), (427, 640), (640, 480), (375, 500)]  # val2017-like
    write_synthetic_coco(folder / "coco", count=count, sizes_hw=sizes)
    return folder


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



# ---- the packs ---------------------------------------------------------------------------------

REFINENET = PackBench(
    pack="RefineNet", guide_batches=(1, 16), write_dataset=_voc_dataset, fill=(None,),
    series=DataSet(None, (500, 500)), quick_series=DataSet(None, (500, 500)),
    guide_ms_per_image={"preprocess": 22.0, "postprocess": 118.0}, goal_ratio=1.5, inference_budget_s=300.0,
    notes="Synthetic images have VOC's sizes (mostly long side 500; some 640x480 and 320x240) at every count.",
)

HRNET = PackBench(
    pack="3D_HRNet", guide_batches=(1, 4), write_dataset=_cityscapes_dataset,
    fill=(_segmentation_logits, _segmentation_logits),
    series=DataSet((128, 256), (128, 256)), quick_series=DataSet((64, 128), (64, 128)),
    real=DataSet((1024, 2048), (1024, 2048)), real_count=10,
    guide_ms_per_image={"preprocess": 180.0, "postprocess": 527.0}, goal_ratio=1.5,
    notes="The 10/100/500 series uses 128x256 synthetic images (memory flatness, not the guide's size); "
          "the per-image speed compared with the guide comes from 10 real-size 1024x2048 images.",
)

POINTREND = PackBench(
    pack="PointRend", guide_batches=(1,), write_dataset=_cityscapes_dataset, fill=(None,),
    series=DataSet((128, 256), (128, 256)), quick_series=DataSet((64, 128), (64, 128)),
    real=DataSet((1024, 2048), (1024, 2048)), real_count=10, goal_ratio=1.2,
    notes="The 10/100/500 series uses 128x256 synthetic images; the real-size row uses 10 images of "
          "1024x2048 with float32 logits outputs (159 MB per image, as the guide's export).",
)

WSEG = PackBench(
    pack="Wseg", guide_batches=(1,), write_dataset=_voc_dataset, fill=(None, _probabilities(0)),
    series=DataSet((24, 32), (64, 64)), quick_series=DataSet((24, 32), (64, 64)),
    real=DataSet(None, (1024, 1024)), real_count=2, goal_ratio=1.5,
    notes="One image is 8 network inputs (4 scales x flip), so per-image figures cover 8 bins. The series "
          "uses 24x32 images padded to 64 (memory flatness); the real-size row uses 2 VOC-sized images "
          "padded to 1024 (8 x 88 MB of mask outputs per image). The postprocess includes the dense CRF "
          "when pydensecrf is importable.",
)

MASKRCNN = PackBench(
    pack="MaskRCNN_mmdet", guide_batches=(1,), write_dataset=_coco_dataset,
    fill=(_detections((1216, 1216)), lambda rng, shape: rng.integers(0, 80, size=shape),
          lambda rng, shape: rng.random(shape, dtype=np.float32)),
    series=DataSet((120, 160), (128, 128)), quick_series=DataSet((120, 160), (128, 128)),
    real=DataSet(None, (1216, 1216)), real_count=10, counts=(10, 100, 250), goal_ratio=1.2,
    notes="The series uses 120x160 images on a 128x128 canvas and stops at 250 images (every image's "
          "outputs take 25 MB, mostly the 100x80x28x28 mask probabilities); the real-size row uses 10 val2017-sized "
          "images on the guide's 1216x1216 canvas. Postprocess outputs are random detections "
          "(100 boxes with scores, labels, 80x28x28 mask probabilities), scored with COCOeval.",
)


PACK_BENCHES: dict[str, PackBench] = {entry.pack: entry for entry in (REFINENET, HRNET, POINTREND, WSEG, MASKRCNN)}
