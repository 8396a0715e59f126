"""One pack end to end with the commands of its README: `python3 -m common.run_pack PACK WORK [...]`.

The steps are the pack config's templates (`<Pack>/config.py`), run in the pack folder as a
user following the README would: dataset (synthetic, or the real one given), weights (demo,
or the real file), the guide's steps, inference on the backend, the postprocess, then the
PyTorch reference on the same bins, its postprocess, and the summary row comparing both.
`<Pack>/run_pack.sh` and `run_all.sh` call this.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from common.cli import UserError, interrupted_child, script_entry, wait_for_child
from common.data.views import make_view
from common.pipeline.pack_config import PackConfig, RunSize, Step, StepValues, render
from common.pipeline.packs import PACK_NAMES, pack_config, pack_dir
from common.runtime.backend import BACKENDS
from common.runtime.precision import DEFAULT_PRECISION, PRECISIONS

# A run starts from an empty work folder, so files of an earlier run (another input size, more
# images) never mix with this one's; the demo checkpoint is kept, it does not change. Only a
# folder this command made (marked) is emptied: a wrong path never loses user files.
WORK_MARKER = ".segzoo-pack-work"
KEEP_ON_RESTART = ("demo_weights", WORK_MARKER)
REFERENCE_TAG = "pytorch"


class StepFailed(Exception):
    def __init__(self, step: Step, code: int):
        super().__init__(f"step '{step.title}' exited {code}")
        self.code = code


def prepare_work_folder(work: Path) -> Path:
    if work.is_dir() and any(work.iterdir()):
        if not (work / WORK_MARKER).is_file():
            raise UserError(f"{work}: folder is not empty and was not made by run_pack; give a new or empty folder")
        for entry in work.iterdir():
            if entry.name not in KEEP_ON_RESTART:
                _remove(entry)
    elif work.exists() and not work.is_dir():
        raise UserError(f"{work}: exists and is not a folder")
    work.mkdir(parents=True, exist_ok=True)
    (work / WORK_MARKER).touch()
    return work.resolve()


def _remove(path: Path) -> None:
    import shutil
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def run_step(config: PackConfig, step: Step, fields: dict[str, str]) -> None:
    """Print the step and its command (as a user would type it in the pack folder), run it there."""
    argv = render(step.argv, fields)
    command = [fields["py"], *argv]
    shown = ["python3", *argv]
    print(f"\n== {config.name}: {step.title}\n$ {shlex.join(shown)}", flush=True)
    process = subprocess.Popen(command, cwd=pack_dir(config.name))
    try:
        code = process.wait()
    except KeyboardInterrupt:  # the step got the Ctrl-C too: let it clean up and say so itself
        raise interrupted_child(wait_for_child(process)) from None
    if code != 0:
        raise StepFailed(step, code)


def synthetic_dataset_step(config: PackConfig, count: int, quick: bool) -> Step:
    size = (config.quick if quick else config.guide).synthetic_hw
    argv = ("-m", "common.synth", config.dataset, "--out",
            "{work}/data/coco" if config.dataset == "coco" else "{work}/data", "--count", str(count))
    if size is not None:
        argv += ("--height", str(size[0]), "--width", str(size[1]))
    return Step(f"synthetic {config.dataset} ({count} images)", argv, "preprocess")


def demo_weights_step(config: PackConfig) -> Step:
    return Step("demo weights (random values in the original file format)",
                ("-m", "common.demo_weights", config.name, "{weights}"), "export")


def fp16_prediction_step(config: PackConfig, quick: bool) -> Step:
    """What ATC's default force_fp16 would cost, predicted on the CPU (common.precision), on one
    sample: the outputs and, at quick sizes, every tensor's range and the first departure. At
    the guides' sizes the per-tensor pass is left to the README's command: it compares every
    intermediate value (billions at 1024x2048; over 15 minutes for 3D_HRNet alone). No keep-list
    search here (it runs the graph many times); the pack README gives the command that searches."""
    return Step("predicted cost of ATC's float16 (common.precision, force_fp16)",
                _fp16_argv(config, quick, "{work}/fp16"), "compare")


def fp16_keep_list_step(config: PackConfig) -> Step:
    """The same prediction with the pack's shipped keep list, at the guide's size (a graph
    exported at another size may have other nodes: MaskRCNN's TopKs fold away at 128x128): does
    it bring the outputs back within the tolerance on this run's graph and sample."""
    return Step(f"predicted cost of ATC's float16 with the shipped keep list ({config.fp16_keep_dtype})",
                _fp16_argv(config, False, "{work}/fp16_keep", "--keep_dtype", config.fp16_keep_dtype, "--no-openvino"),
                "compare")


def _fp16_argv(config: PackConfig, quick: bool, output: str, *extra: str) -> tuple[str, ...]:
    return ("-m", "common.precision", "--model", config.atc_model(), "--input", "{bins}", "--output", output,
            "--max-samples", "1", "--no-search", *(() if quick else ("--no-tensors",)), *config.fp16_flags, *extra)


def backend_tag(backend: str, precision: str) -> str:
    """The result folder name of a run: `onnxruntime`, `openvino`, `openvino_bf16` ..."""
    return backend if precision == DEFAULT_PRECISION else f"{backend}_{precision}"


def inference_step(config: PackConfig, backend: str, precision: str) -> Step:
    tag = backend_tag(backend, precision)
    extra = () if backend == "onnxruntime" and precision == DEFAULT_PRECISION else (
        "--backend", backend, "--precision", precision)
    return Step(f"inference ({backend}, {precision})", (
        "-m", "common.infer", "--model", "{onnx}", "--input", "{bins}", "--output", "{work}/result",
        "--output_dirname", tag, *config.infer_flags, *extra), "compare")


def reference_step() -> Step:
    return Step("reference: PyTorch on the same bins", (
        "-m", "common.torch_infer", "--model", "{onnx}", "--checkpoint", "{weights}", "--input", "{bins}",
        "--output", "{work}/result", "--output_dirname", REFERENCE_TAG), "compare")


def disagreement_step(backend_tag: str) -> Step:
    return Step("where PyTorch and the backend disagree (pictures)", (
        "-m", "common.disagreement", "{work}/show/" + REFERENCE_TAG, "{work}/show/" + backend_tag,
        "--out", "{work}/disagreement"), "compare")


def writes_pictures(config: PackConfig) -> bool:
    return any("{show}" in step.argv for step in config.score)


def summary_step(config: PackConfig, tag: str, data_label: str, demo_weights: bool) -> Step:
    return Step("summary row and verdict", (
        "-m", "common.pack_summary", "--pack", config.name, "--work", "{work}", "--backend", tag,
        "--data", data_label, "--weights", "{weights}", *(("--demo-weights",) if demo_weights else ())), "compare")


def dataset_for_run(config: PackConfig, args: argparse.Namespace, work: Path, size: RunSize) -> tuple[Path, str]:
    """The data root the steps read, and how the summary row names the data."""
    count = args.count or size.images
    if not args.data_root:
        return work / "data", f"synthetic ({count} images)"
    subset = args.count or (size.images if args.quick else None)
    resize = config.quick_real_images if args.quick else "none"
    view = make_view(config.dataset, args.data_root, work / "data", subset, size.input_hw, resize)
    how = [f"first {subset} images" if subset else "all images"]
    if resize != "none":
        how.append(f"resized copies ({resize.replace('_', ' ')} {size.input_hw[0]}x{size.input_hw[1]})")
    label = f"{Path(args.data_root).resolve()} ({', '.join(how)})"
    print(f"\n== {config.name}: dataset view of the real files in {view}: {label}", flush=True)
    return view, label


def run_pack(args: argparse.Namespace) -> int:
    config = pack_config(args.pack)
    size = config.quick if args.quick else config.guide
    count = args.count or size.images
    work = prepare_work_folder(Path(args.work))
    data, data_label = dataset_for_run(config, args, work, size)
    weights = _weights_path(config, args.weights_dir, work)
    values = StepValues(py=sys.executable, work=str(work), data=str(data), weights=str(weights),
                        input_hw=size.input_hw, count=count)
    fields = values.fields(config)
    if not args.data_root:
        run_step(config, synthetic_dataset_step(config, count, args.quick), fields)
    if not args.weights_dir and not weights.is_file():
        run_step(config, demo_weights_step(config), fields)
    for step in config.prepare:
        run_step(config, step, fields)
    tag = backend_tag(args.backend, args.precision)
    backend_fields = StepValues(**{**values.__dict__, "tag": tag}).fields(config)
    run_step(config, inference_step(config, args.backend, args.precision), backend_fields)
    for step in (*config.score, *config.extra):
        run_step(config, step, backend_fields)
    run_step(config, fp16_prediction_step(config, args.quick), fields)
    if config.fp16_keep_dtype and not args.quick:  # its names are nodes of the guide-size graph
        run_step(config, fp16_keep_list_step(config), fields)
    if args.skip_pytorch:
        return 0
    reference_fields = StepValues(**{**values.__dict__, "tag": REFERENCE_TAG}).fields(config)
    run_step(config, reference_step(), reference_fields)
    for step in config.score:
        run_step(config, step, reference_fields)
    if writes_pictures(config):
        run_step(config, disagreement_step(tag), fields)
    run_step(config, summary_step(config, tag, data_label, demo_weights=not args.weights_dir), fields)
    return 0


def _weights_path(config: PackConfig, weights_dir: str | None, work: Path) -> Path:
    if weights_dir:
        path = Path(weights_dir).resolve() / config.weights_file
        if not path.is_file():
            raise UserError(f"{path}: checkpoint not found (--weights-dir holds the published files "
                            f"under their names; this pack needs {config.weights_file})")
        return path
    return work / "demo_weights" / config.weights_file


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m common.run_pack", description=__doc__.split("\n")[0])
    parser.add_argument("pack", choices=PACK_NAMES)
    parser.add_argument("work", help="work folder (made, or emptied when an earlier run_pack made it)")
    parser.add_argument("--data-root", help="real data: the folder holding VOCdevkit/, cityscapes/ or coco/")
    parser.add_argument("--weights-dir", help="real weights: the folder holding the published checkpoint")
    parser.add_argument("--quick", action="store_true", help="small input size and a few images")
    parser.add_argument("--count", type=int, default=None,
                        help="number of images (synthetic ones; with --data-root the first N of the split)")
    parser.add_argument("--skip-pytorch", action="store_true", help="no PyTorch reference run")
    parser.add_argument("--backend", default="onnxruntime", choices=BACKENDS, help="engine of the run (default onnxruntime)")
    parser.add_argument("--precision", default=DEFAULT_PRECISION, choices=PRECISIONS,
                        help="compute precision of the backend (default fp32); the reference stays PyTorch fp32")
    args = parser.parse_args(argv)
    if args.count is not None and args.count < 1:
        parser.error("--count must be >= 1")
    for name in ("data_root", "weights_dir"):
        folder = getattr(args, name)
        if folder and not Path(folder).is_dir():
            parser.error(f"--{name.replace('_', '-')} {folder}: folder not found")
    return args


def main(args: argparse.Namespace) -> int:
    try:
        return run_pack(args)
    except StepFailed as failed:
        print(f"error: {args.pack}: {failed}", file=sys.stderr)
        return failed.code


if __name__ == "__main__":
    script_entry(main, parse_args)
