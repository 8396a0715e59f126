"""Guide step 6.1: output bins -> mIoU on VOC2012 val, printed as `miou: 0.xxxxxx`.

As the ModelZoo postprocess (docs/specs/RefineNet.md §7): the 1/4-resolution logits are upsampled
x4 (bilinear, half-pixel centres) to the 500x500 canvas, argmax is taken, and one dataset-wide
21x21 confusion matrix is accumulated against the label put through the same resize and
centred pad (pad = 255, ignored). mIoU averages the classes present in labels or predictions.
"""
from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from common.cli import UserError, script_entry  # first: a Ctrl-C during the imports below is one line

import cv2
import numpy as np

from common.data.geometry import Letterbox, letterbox, letterbox_from_meta
from common.data.images import check_label_sizes
from common.data.labels import add_unknown_ids_argument, warn_unknown_as_void
from common.data.voc import VOC_CLASSES, VOC_IGNORE, VOC_LABEL_SET, VOCSegmentation, read_voc_label
from common.eval.confusion import ConfusionMatrix
from common.eval.seg_report import report_segmentation
from common.files.bins import bin_stem, check_unique_stems, read_bin, require_finite
from common.files.folders import output_file_parent, output_folders
from common.files.outputs import match_outputs, output_file, warn_left_out
from common.pipeline.parallel import map_with_progress
from common.pipeline.preprocess import META_NAME, add_run_arguments, find_meta, read_meta
from common.pipeline.sizes import check_run_size
from refinenet.config import NUM_CLASSES, output_shapes
from common.viz.palettes import VOC
from common.viz.show import add_show_dir_argument, write_show_pictures


def label_on_canvas(label: np.ndarray, box: Letterbox) -> np.ndarray:
    """The label through the preprocess geometry: nearest resize, centred pad with 255."""
    if label.shape != tuple(box.original_hw):
        raise UserError(f"label is {label.shape}, the preprocess saw an image of {tuple(box.original_hw)}")
    if box.resized_hw != box.original_hw:
        label = cv2.resize(label, box.resized_hw[::-1], interpolation=cv2.INTER_NEAREST)
    canvas = np.full(box.canvas_hw, VOC_IGNORE, dtype=np.uint8)
    canvas[box.pad_top:box.pad_top + box.resized_hw[0], box.pad_left:box.pad_left + box.resized_hw[1]] = label
    return canvas


def logits_to_class_map(logits_chw: np.ndarray, canvas_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling with half-pixel centres (= F.interpolate align_corners=False), argmax."""
    upsampled = cv2.resize(np.ascontiguousarray(logits_chw.transpose(1, 2, 0)), canvas_hw[::-1],
                           interpolation=cv2.INTER_LINEAR)
    return upsampled.argmax(axis=2).astype(np.uint8)


def sample_name(image_id: str) -> str:
    """The name ais_bench gives the outputs of `<id>.bin`: cut at the first dot."""
    return bin_stem(f"{image_id}.bin")


def score_one(image_id: str, dataset: VOCSegmentation, result_dir: Path, geometry: dict, size: int,
              show_dir: Path | None = None, unknown_as_void: bool = False) -> ConfusionMatrix:
    label, unknown = read_voc_label(dataset.label_path(image_id), unknown_as_void)
    box = geometry[image_id] if image_id in geometry else letterbox(label.shape, size)
    path = output_file(result_dir, sample_name(image_id))
    logits = read_bin(path, output_shapes((size, size))[0], np.float32)
    require_finite(logits, path)
    try:
        target = label_on_canvas(label, box)
    except UserError as err:
        raise UserError(f"{dataset.label_path(image_id)}: {err}") from None
    matrix = ConfusionMatrix(NUM_CLASSES, VOC_IGNORE)
    prediction = logits_to_class_map(logits, box.canvas_hw)
    matrix.update(target, prediction)
    matrix.note_unknown_as_void(unknown)
    if show_dir is not None:  # the pad is void in the target: every scored pixel is in the image area
        write_show_pictures(show_dir, image_id, box.unpadded(prediction), VOC, dataset.image_path(image_id))
    return matrix


def load_geometry(meta_path: Path) -> tuple[dict, int]:
    """{image id: Letterbox} and the input size from the preprocess metadata, checked whole."""
    meta = read_meta(meta_path, ("size", "images"), "RefineNet_preprocess.py")
    size, records = meta["size"], meta["images"]
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise UserError(f"{meta_path}: 'size' is {size!r:.40}, expected a positive integer")
    if not isinstance(records, dict):
        raise UserError(f"{meta_path}: 'images' is not a mapping of image ids")
    geometry = {image_id: letterbox_from_meta(record, meta_path, image_id) for image_id, record in records.items()}
    for image_id, box in geometry.items():
        if box.canvas_hw != (size, size):
            raise UserError(f"{meta_path}: the geometry of '{image_id}' has a {box.canvas_hw[0]}x{box.canvas_hw[1]} "
                            f"canvas, the metadata's 'size' is {size}")
    return geometry, size


def geometry_of(result_dir: Path, meta: str | None, size: int | None) -> tuple[dict, int]:
    """The preprocess geometry; without metadata, only when --size says the input size, the
    letterbox recomputed from each label's size (the same formula; main says so)."""
    meta_path = find_meta(result_dir, meta, required=size is None)
    if meta_path is None:
        return {}, size
    geometry, meta_size = load_geometry(meta_path)
    if size is not None and size != meta_size:
        raise UserError(f"{meta_path}: the bins were made at --size {meta_size}, not {size}")
    return geometry, meta_size


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--val-dir", required=True, help="the folder holding VOCdevkit")
    parser.add_argument("--result-dir", required=True, help="inference output folder (<id>_0.bin)")
    parser.add_argument("--meta", default=None,
                        help=f"{META_NAME} of the preprocess (default: found through the run's summary JSON)")
    parser.add_argument("--size", type=int, default=None,
                        help="model input size, only for results whose preprocess metadata is lost "
                             "(the geometry is then recomputed from each label's size)")
    parser.add_argument("--save_path", default=None, help="metric JSON (default: <result-dir>_miou.json)")
    parser.add_argument("--split", default="val")
    add_run_arguments(parser)
    parser.add_argument("--allow-missing", action="store_true", help="score the images that have outputs")
    add_unknown_ids_argument(parser)
    add_show_dir_argument(parser)
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    if args.size is not None:
        check_run_size(f"--size {args.size}", (args.size, args.size), output_shapes=output_shapes)
    dataset = VOCSegmentation.from_parent(args.val_dir, args.split)
    dataset.check_files(labels=True)
    check_label_sizes([(dataset.image_path(i), dataset.label_path(i)) for i in dataset.ids])
    result_dir = Path(args.result_dir)
    check_unique_stems([(dataset.image_path(i), f"{i}.bin") for i in dataset.ids])
    id_of = {sample_name(image_id): image_id for image_id in dataset.ids}
    names, missing = match_outputs(result_dir, list(id_of), allow_missing=args.allow_missing)
    ids, missing = [id_of[n] for n in names], [id_of[n] for n in missing]
    geometry, size = geometry_of(result_dir, args.meta, args.size)
    save_path = Path(args.save_path) if args.save_path else Path(str(result_dir).rstrip("/") + "_miou.json")
    output_file_parent(save_path)
    output_folders(args.show_dir)
    matrix = ConfusionMatrix(NUM_CLASSES, VOC_IGNORE)
    work = partial(score_one, dataset=dataset, result_dir=result_dir, geometry=geometry, size=size,
                   show_dir=args.show_dir, unknown_as_void=args.unknown_ids_as_void)
    for image_matrix in map_with_progress(work, ids, args.workers, desc="Postprocess"):
        matrix.merge(image_matrix)
    matrix.require_scored_pixels(f"{dataset.root / 'SegmentationClass'}")
    report_segmentation(matrix, VOC_CLASSES, save_path,
                        {"images_left_out": len(missing), "result_dir": str(result_dir)})
    warn_left_out(missing, len(dataset.ids))
    warn_unknown_as_void(matrix.unknown_as_void_pixels, matrix.unknown_as_void_images, VOC_LABEL_SET)
    if not geometry:
        print(f"[WARNING] {result_dir}: no {META_NAME} found; the geometry was recomputed for --size {size} "
              "from each label's size", file=sys.stderr)
    print(f"miou: {matrix.mean_iou():.6f}")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
