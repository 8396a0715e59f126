"""What a pack is, as data: the shape of every `<Pack>/config.py` (torch-free).

A pack's config is the one home of its facts: name, dataset, the published checkpoint's file
name, model inputs and outputs, the guide's and the quick input sizes, and the command of each
guide step, written once as a template. `python3 -m common.run_pack` runs those commands,
`bench/` times them, `common.demo_weights` and `common.pack_summary` read the rest.

Templates are argument lists; `{name}` fields are filled by `render` (see `StepValues`).
A first element ending in `.py` is a script of the pack folder, run there; `-m` starts a
`python3 -m` module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

HW = tuple[int, int]


@dataclass(frozen=True)
class Tensor:
    """One model input or output, per sample (no batch axis)."""
    name: str
    dtype: str = "float32"
    classes: int | None = None  # class scores (class axis first, float) or a class map (int)


STEP_KINDS = ("export", "fix", "atc", "preprocess", "info", "postprocess", "compare")


@dataclass(frozen=True)
class Step:
    title: str
    argv: tuple[str, ...]
    kind: str  # one of STEP_KINDS: what the bench and the docs look steps up by

    def __post_init__(self):
        if self.kind not in STEP_KINDS:
            raise ValueError(f"step {self.title!r}: unknown kind {self.kind!r}")


@dataclass(frozen=True)
class RunSize:
    """Input size and number of images of a run (`guide`: the guide's size; `quick`: --quick)."""
    input_hw: HW
    images: int
    synthetic_hw: HW | None = None  # size of synthetic images (None: the dataset writer's default)


@dataclass(frozen=True)
class Metric:
    name: str  # as printed, e.g. "mIoU (CRF)"
    key: str   # dotted key in the metric JSON


@dataclass(frozen=True)
class PackConfig:
    name: str                  # folder and display name
    package: str               # importable package of the folder
    dataset: str               # "voc", "cityscapes" or "coco"
    weights_file: str          # the published checkpoint's file name
    manifest: str              # common/weights/manifests/<manifest>.keys.json
    guide: RunSize
    quick: RunSize
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    output_shapes: Callable[[HW], list[tuple[int, ...]]]  # per sample (one result file each), at an input size
    metric: Metric
    onnx: str                  # template: the graph the backends run
    bins: str                  # template: the folder of input bins
    prepare: tuple[Step, ...]  # export, graph fixes, ATC, preprocess: before inference
    score: tuple[Step, ...]    # postprocess + metric of one result folder ({result}, {tag})
    extra: tuple[Step, ...] = ()  # after the backend is scored (e.g. a second graph compared)
    infer_flags: tuple[str, ...] = ()  # the guide's extra inference flags
    inputs_per_image: int = 1  # model inputs made from one image (Wseg: 8 scales/flips)
    export_options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # label -> export flags
    # How the backend's outputs are judged against PyTorch's: "classes" (per-pixel class) or
    # "detections" (matched one to one); see common/summary/verdict.py.
    compare: str = "classes"
    # Real images in a --quick run: "none" (as they are), "to_input" (resized to the input size:
    # the model takes whole frames), "half_input" (long side <= half the input: the pad holds
    # the image at scale 2). See common/data/views.py.
    quick_real_images: str = "none"
    # Flags of `python3 -m common.precision` particular to the pack (e.g. detections have no class axis).
    fp16_flags: tuple[str, ...] = ()
    # A `--keep_dtype` file in the pack folder for ATC's force_fp16, shipped where the prediction
    # misses the tolerance without one; its names are nodes of the graph at the guide's size, and
    # every run at that size checks it on its own graph.
    fp16_keep_dtype: str = ""

    def atc_model(self) -> str:
        """Template of the graph the ATC step converts (the one ATC's float16 applies to)."""
        argv = self.steps_of("atc")[0].argv
        return argv[argv.index("--model") + 1]
    notes: str = ""

    def steps_of(self, kind: str) -> list[Step]:
        return [step for step in (*self.prepare, *self.score, *self.extra) if step.kind == kind]


def ceil_div(value: int, divisor: int) -> int:
    return -(-value // divisor)


@dataclass(frozen=True)
class StepValues:
    """The fields a template may use. `extra` adds pack-specific ones (e.g. {val_list})."""
    py: str
    work: str
    data: str
    weights: str
    input_hw: HW
    count: int
    tag: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    def fields(self, config: PackConfig) -> dict[str, str]:
        height, width = self.input_hw
        values = {"py": self.py, "work": self.work, "data": self.data, "weights": self.weights,
                  "h": str(height), "w": str(width), "count": str(self.count), "tag": self.tag,
                  "result": f"{self.work}/result/{self.tag}", "metric": f"{self.work}/metric_{self.tag}.json",
                  "show": f"{self.work}/show/{self.tag}", **self.extra}
        values["onnx"] = config.onnx.format(**values)
        values["bins"] = config.bins.format(**values)
        return values


def render(argv: tuple[str, ...], fields: Mapping[str, str]) -> list[str]:
    """Fill a template; an unknown field is a bug in the config (KeyError with its name)."""
    return [part.format(**fields) for part in argv]
