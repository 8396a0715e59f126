"""Guide step "精度验证": output bins -> COCO detections -> bbox and segm AP (COCOeval).

    python3 mmdet_postprocess.py --bin_data_path=result/onnxruntime --test_annotation=val2017_jpg.info \
        --val2017_json_path=data/coco/annotations/instances_val2017.json --det_results_path=det_result \
        --net_out_num=3 --net_input_height=1216 --net_input_width=1216 [--ifShowDetObj]

Per image listed in the info file, matched to its outputs `<stem>_0/1/2.bin` and to its COCO
id by file name: rows with label >= 0 and score > 0 are the detections (padding rows are
dropped); boxes are mapped from the canvas back to the original image with the geometry the
preprocess saved and mmdet 2.8's float32 arithmetic (clipped to the resized image, divided
by the float32 scale factor), and the selected class's 28x28 probability map is pasted at
the original size the way mmdet 2.8 does it (grid_sample at pixel centres, threshold >= 0.5).
Results are scored like mmdet 2.8 CocoDataset.evaluate (see
common/eval/coco_eval.py) and written as JSON: detections, full AP/AR tables, per-class AP.
The ModelZoo script instead pastes in the canvas and resizes with a uint8 truncation and does
not clip boxes; this script follows upstream mmdet.
"""
from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from common.cli import UserError, script_entry  # first: a Ctrl-C during the imports below is one line

import cv2
import numpy as np

from common.data.coco import COCO_CATEGORY_IDS, COCO_CLASSES, CocoInstances
from common.data.geometry import Letterbox, letterbox_from_meta
from common.data.images import read_image_bgr
from common.eval import coco_eval
from common.files.atomic import write_json_atomic, write_text_atomic
from common.files.folders import output_file_parent, output_folders
from common.files.bins import read_bin, require_finite
from common.files.info import parse_info
from common.files.outputs import match_outputs, output_file, warn_left_out
from common.pipeline.parallel import map_with_progress
from common.viz.draw import save_encoded
from common.pipeline.preprocess import META_NAME, add_scoring_arguments, find_meta, read_meta
from common.pipeline.sizes import check_run_size
from maskrcnn_mmdet import config
MASK_THRESHOLD = 0.5  # test_cfg.rcnn.mask_thr_binary
PADDING_LABEL = -1  # the exported graph fills the rows after the last detection with label -1
TXT_SCORE_THRESHOLD = 0.05


# ---- one image -------------------------------------------------------------------------------

def read_outputs(result_dir: Path, stem: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dets [100,5] float32, labels [100] (int32 after label_to_int32.py, else int64), masks."""
    count, classes, size = config.MAX_PER_IMG, config.NUM_CLASSES, config.MASK_SIZE
    dets_path, masks_path = output_file(result_dir, stem, 0), output_file(result_dir, stem, 2)
    dets = require_finite(read_bin(dets_path, (count, 5), np.float32), dets_path)
    labels_path = output_file(result_dir, stem, 1)
    labels_dtype = np.int32 if labels_path.is_file() and labels_path.stat().st_size == count * 4 else np.int64
    labels = read_bin(labels_path, (count,), labels_dtype).astype(np.int64)
    foreign = np.flatnonzero((labels < PADDING_LABEL) | (labels >= classes))
    if foreign.size:  # dropping them would score an image without its detections, silently
        raise UserError(f"{labels_path}: row {int(foreign[0])} has label {int(labels[foreign[0]])}, outside the "
                        f"{classes} classes 0..{classes - 1} (and {PADDING_LABEL} for padding rows); "
                        f"{foreign.size} such row(s): outputs of another model?")
    masks = require_finite(read_bin(masks_path, (count, classes, size, size), np.float32), masks_path)
    return dets, labels, masks


def scale_factor(box: Letterbox) -> np.ndarray:
    """mmdet 2.8 Resize (keep_ratio): float32 [w_scale, h_scale, w_scale, h_scale], w_scale = new_w / w."""
    h_scale = box.resized_hw[0] / box.original_hw[0]
    w_scale = box.resized_hw[1] / box.original_hw[1]
    return np.array([w_scale, h_scale, w_scale, h_scale], dtype=np.float32)


def canvas_to_original(boxes: np.ndarray, box: Letterbox) -> tuple[np.ndarray, np.ndarray]:
    """Canvas boxes -> (output boxes, paste boxes) in original-image pixels, float32 as mmdet 2.8.

    The centred pad is undone in float32 (exact for boxes inside the image: the offsets are
    integers), then mmdet's steps: boxes clipped to the resized image (`delta2bbox` clamps to
    `img_shape`), divided by the float32 scale factor (`BBoxHead.get_bboxes`, rescale=True).
    mmdet then pastes masks with `det * scale_factor / scale_factor` (`simple_test_mask` makes
    the mask RoIs with the multiply, `get_seg_masks` divides again), not with `det` itself. The
    paste boxes here are not clipped: the graph's mask RoIs were not clipped to the image either
    (only to the canvas), so a box reaching into the padding keeps its mask's geometry.
    """
    offset = np.array([box.pad_left, box.pad_top] * 2, dtype=np.float32)
    limits = np.array([box.resized_hw[1], box.resized_hw[0]] * 2, dtype=np.float32)
    factor = scale_factor(box)
    in_resized = np.asarray(boxes, dtype=np.float32) - offset
    output_boxes = np.clip(in_resized, np.float32(0), limits) / factor
    paste_boxes = (in_resized / factor) * factor / factor
    return output_boxes, paste_boxes


def paste_mask(probabilities: np.ndarray, box: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """mmdet 2.8 `_do_paste_mask` for one mask, restricted to the box +-1 px (its CPU path).

    Each image pixel centre (x + 0.5, y + 0.5) is mapped into the box's [-1, 1] range and the
    28x28 map is sampled bilinearly with zero padding (align_corners=False); >= 0.5 is inside.
    A zero-size box gives an empty mask.
    """
    height, width = image_hw
    x0, y0, x1, y1 = (float(v) for v in box)
    mask = np.zeros((height, width), dtype=bool)
    left, top = max(int(np.floor(min(x0, x1))) - 1, 0), max(int(np.floor(min(y0, y1))) - 1, 0)
    right, bottom = min(int(np.ceil(max(x0, x1))) + 1, width), min(int(np.ceil(max(y0, y1))) + 1, height)
    if right <= left or bottom <= top or x1 <= x0 or y1 <= y0:
        return mask
    xs, ys = grid_coordinates(left, right, x0, x1), grid_coordinates(top, bottom, y0, y1)
    sampled = sample_bilinear(np.asarray(probabilities, dtype=np.float32), xs, ys)
    mask[top:bottom, left:right] = sampled >= MASK_THRESHOLD
    return mask


# ---- torch's grid_sample in numpy, bit for bit --------------------------------------------------
# mmdet pastes with torch (F.grid_sample); doing the same float32 steps here keeps torch out of
# this script (start-up, memory, forked workers). tests/packs/test_maskrcnn_mmdet_postprocess.py
# compares both on random maps and boxes, value for value.

def grid_coordinates(start: int, stop: int, low: float, high: float) -> np.ndarray:
    """Pixel centres start..stop-1 in the [-1, 1] range of [low, high], float32 step by step as
    torch does `(arange + 0.5 - low) / (high - low) * 2 - 1` (the scalars taken as float32)."""
    centres = np.arange(start, stop, dtype=np.float32) + np.float32(0.5)
    return (centres - np.float32(low)) / np.float32(high - low) * np.float32(2) - np.float32(1)


def _fused_multiply_add(a: np.ndarray, b, c) -> np.ndarray:
    """float32 a * b + c rounded once, as an FMA instruction does: the float32 product is exact in
    float64. (The float64 sum is itself rounded before float32; the two roundings can differ from
    one only when that sum falls exactly halfway between two float32 numbers.)"""
    exact = np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64) + np.asarray(c, dtype=np.float64)
    return exact.astype(np.float32)


def sample_bilinear(source: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """torch `grid_sample(bilinear, zeros, align_corners=False)` of a 2-D float32 map, sampled at
    columns `xs` x rows `ys` (grid values in [-1, 1]), with the arithmetic of ATen's vectorised CPU
    kernel: x = (g + 1) * size / 2 - 0.5, floor, distances to the four sides, corner weights as
    products of two distances, corners outside the map read as 0, then nw, ne, sw, se summed in
    that order. Torch builds that kernel with fused multiply-adds on AVX2 / AVX-512 CPUs, so the
    unnormalisation and the three additions round once (on a CPU without FMA torch itself rounds
    twice and differs from this in the last bit of about one value in five).
    """
    size_h, size_w = source.shape
    x = _fused_multiply_add(xs + np.float32(1), np.float32(size_w / 2), np.float32(-0.5))
    y = _fused_multiply_add(ys + np.float32(1), np.float32(size_h / 2), np.float32(-0.5))
    x_west, y_north = np.floor(x), np.floor(y)
    to_west, to_north = x - x_west, y - y_north
    to_east, to_south = np.float32(1) - to_west, np.float32(1) - to_north
    # one cell of zeros around the map: a corner outside reads 0 (zero padding)
    padded = np.zeros((size_h + 2, size_w + 2), dtype=np.float32)
    padded[1:-1, 1:-1] = source
    col_west = np.clip(x_west.astype(np.int64) + 1, 0, size_w + 1)
    col_east = np.clip(x_west.astype(np.int64) + 2, 0, size_w + 1)
    rows_north = padded[np.clip(y_north.astype(np.int64) + 1, 0, size_h + 1)]
    rows_south = padded[np.clip(y_north.astype(np.int64) + 2, 0, size_h + 1)]
    total = rows_north[:, col_west] * (to_south[:, None] * to_east[None, :])
    total = _fused_multiply_add(rows_north[:, col_east], to_south[:, None] * to_west[None, :], total)
    total = _fused_multiply_add(rows_south[:, col_west], to_north[:, None] * to_east[None, :], total)
    return _fused_multiply_add(rows_south[:, col_east], to_north[:, None] * to_west[None, :], total)


def image_detections(result_dir: Path, stem: str, image_id: int, box: Letterbox) -> list[dict]:
    """One image's detections as dicts: label, score, clipped xyxy box, RLE of the pasted mask."""
    dets, labels, masks = read_outputs(result_dir, stem)
    keep = np.flatnonzero((labels != PADDING_LABEL) & (dets[:, 4] > 0))
    output_boxes, paste_boxes = canvas_to_original(dets[keep, :4], box)
    found = []
    for row, output_box, paste_box in zip(keep, output_boxes, paste_boxes):
        label = int(labels[row])
        mask = paste_mask(masks[row, label], paste_box, box.original_hw)
        found.append({"image_id": image_id, "label": label, "score": float(dets[row, 4]),
                      "box": [float(v) for v in output_box], "rle": coco_eval.encode_mask(mask)})
    return found


# ---- side outputs: per-image txt, drawings ------------------------------------------------------

def detection_lines(detections: list[dict]) -> str:
    """ModelZoo txt: `<class name> <score> x1 y1 x2 y2`, spaces in names as '_' (one token each)."""
    lines = []
    for det in detections:
        if det["score"] >= TXT_SCORE_THRESHOLD:
            name = COCO_CLASSES[det["label"]].replace(" ", "_")
            lines.append(f"{name} {det['score']:.6f} " + " ".join(f"{v:.2f}" for v in det["box"]))
    return "".join(line + "\n" for line in lines)


def class_colour(label: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(label + 7)
    return tuple(int(c) for c in rng.integers(64, 256, size=3))


def draw_detections(image_path: Path, detections: list[dict], out_path: Path, score_threshold: float) -> None:
    """Masks blended in each class's colour, boxes and `name score` labels, saved as JPEG."""
    from pycocotools import mask as mask_utils
    image = read_image_bgr(image_path)
    for det in detections:
        if det["score"] < score_threshold:
            continue
        colour = class_colour(det["label"])
        rle = dict(det["rle"], counts=det["rle"]["counts"].encode("ascii"))
        mask = mask_utils.decode(rle).astype(bool)
        image[mask] = (0.5 * image[mask] + 0.5 * np.array(colour)).astype(np.uint8)
        x1, y1, x2, y2 = (int(round(v)) for v in det["box"])
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 1)
        cv2.putText(image, f"{COCO_CLASSES[det['label']]} {det['score']:.2f}", (x1, max(y1 - 2, 8)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1, cv2.LINE_AA)
    save_encoded(out_path, image)


def process_one(sample: tuple[str, int, str], result_dir: Path, geometry: dict, det_dir: Path,
                show: bool, show_threshold: float) -> list[dict]:
    stem, image_id, image_path = sample
    detections = image_detections(result_dir, stem, image_id, geometry[stem])
    write_text_atomic(det_dir / f"{stem}.txt", detection_lines(detections))
    if show:
        draw_detections(Path(image_path), detections, det_dir / "show" / f"{stem}.jpg", show_threshold)
    return detections


# ---- dataset level -----------------------------------------------------------------------------

def load_geometry(meta_path: Path, canvas_hw: tuple[int, int]) -> dict[str, Letterbox]:
    meta = read_meta(meta_path, ("images", "canvas_hw"), "mmdet_preprocess.py")
    try:
        meta_canvas = tuple(int(v) for v in meta["canvas_hw"])
        records = dict(meta["images"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"{meta_path}: not a {META_NAME} written by mmdet_preprocess.py") from None
    geometry = {stem: letterbox_from_meta(values, meta_path, stem) for stem, values in records.items()}
    for stem, box in geometry.items():
        if box.canvas_hw != meta_canvas:
            raise UserError(f"{meta_path}: the geometry of '{stem}' has a {box.canvas_hw[0]}x{box.canvas_hw[1]} "
                            f"canvas, 'canvas_hw' says {meta_canvas[0]}x{meta_canvas[1]}")
    if meta_canvas != tuple(canvas_hw):
        raise UserError(f"{meta_path}: bins were made for {meta_canvas[0]}x{meta_canvas[1]}, but "
                        f"--net_input_height/--net_input_width say {canvas_hw[0]}x{canvas_hw[1]}")
    return geometry


def listed_samples(info_path: str, dataset: CocoInstances, geometry: dict) -> list[tuple[str, int, str]]:
    """(stem, COCO image id, image path) of every info line; unknown names are UserErrors."""
    samples, rotated, seen = [], [], set()
    for _, path, width, height in parse_info(info_path):
        stem = Path(path).name.split(".", 1)[0]
        if stem in seen:  # one image's detections are evaluated together, never in two parts
            raise UserError(f"{info_path}: image {Path(path).name} is listed twice")
        seen.add(stem)
        if stem not in dataset.id_by_stem:
            raise UserError(f"{info_path}: image {Path(path).name} is not in {dataset.annotation_json}")
        if stem not in geometry:
            raise UserError(f"{info_path}: image {Path(path).name} has no preprocess geometry (not preprocessed?)")
        decoded_hw = geometry[stem].original_hw
        if decoded_hw == (width, height) != (height, width):
            rotated.append(Path(path).name)  # cv2 applies EXIF orientation, PIL's size does not
        elif decoded_hw != (height, width):
            raise UserError(f"{info_path}: {Path(path).name} is {width}x{height} here but was "
                            f"{decoded_hw[1]}x{decoded_hw[0]} when preprocessed")
        samples.append((stem, dataset.id_by_stem[stem], path))
    if not samples:
        raise UserError(f"{info_path}: no images listed")
    if rotated:
        print(f"warning: {len(rotated)} image(s) were decoded rotated by their EXIF orientation (first: "
              f"{rotated[0]}); as in mmdet, their detections are in the rotated frame")
    return samples


def coco_results(detections: list[dict], with_segm_bbox: bool) -> tuple[list[dict], list[dict]]:
    bbox_results, segm_results = [], []
    for det in detections:
        entry = {"image_id": det["image_id"], "bbox": coco_eval.xyxy_to_xywh(det["box"]),
                 "score": det["score"], "category_id": COCO_CATEGORY_IDS[det["label"]]}
        bbox_results.append(entry)
        segm = {key: value for key, value in entry.items() if key != "bbox" or with_segm_bbox}
        segm["segmentation"] = det["rle"]
        segm_results.append(segm)
    return bbox_results, segm_results


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin_data_path", required=True, help="inference output folder (<stem>_0/1/2.bin)")
    parser.add_argument("--test_annotation", required=True, help="info file from get_info.py (images to score)")
    parser.add_argument("--val2017_json_path", required=True, help="annotations/instances_val2017.json")
    parser.add_argument("--det_results_path", default="det_result", help="folder for txt, json and drawings")
    parser.add_argument("--net_out_num", type=int, default=3, help="number of model outputs (3)")
    parser.add_argument("--net_input_height", type=int, default=1216)
    parser.add_argument("--net_input_width", type=int, default=1216)
    parser.add_argument("--ifShowDetObj", action="store_true", help="draw boxes, labels and masks on the images")
    parser.add_argument("--show-score-thr", type=float, default=0.3, help="score threshold of the drawings")
    parser.add_argument("--meta", default=None,
                        help=f"{META_NAME} of the preprocess (default: found through the run's summary JSON)")
    parser.add_argument("--save_path", default=None, help="metric JSON (default: <det_results_path>/metrics.json)")
    parser.add_argument("--segm-area-from-mask", action="store_true",
                        help="segm size ranges by mask area (mmdet >= 2.12) instead of box area (mmdet 2.8)")
    add_scoring_arguments(parser)
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    if args.net_out_num != 3:
        raise UserError(f"--net_out_num {args.net_out_num}: this model has 3 outputs (boxes, labels, masks)")
    check_run_size(f"--net_input_height {args.net_input_height} --net_input_width {args.net_input_width}",
                   (args.net_input_height, args.net_input_width), output_shapes=config.output_shapes)
    result_dir = Path(args.bin_data_path)
    dataset = CocoInstances(annotation_json=args.val2017_json_path)
    geometry = load_geometry(find_meta(result_dir, args.meta), (args.net_input_height, args.net_input_width))
    samples = listed_samples(args.test_annotation, dataset, geometry)
    stems, missing = match_outputs(result_dir, [s[0] for s in samples], num_outputs=3,
                                   allow_missing=args.allow_missing)
    warn_left_out(missing, len(samples))
    kept = set(stems)
    samples = [s for s in samples if s[0] in kept]
    dataset.require_objects(s[1] for s in samples)
    det_dir = Path(args.det_results_path)
    save_path = output_file_parent(Path(args.save_path) if args.save_path else det_dir / "metrics.json")
    output_folders(det_dir, det_dir / "show" if args.ifShowDetObj else None)
    work = partial(process_one, result_dir=result_dir, geometry=geometry, det_dir=det_dir,
                   show=args.ifShowDetObj, show_threshold=args.show_score_thr)
    image_ids = [s[1] for s in samples]
    evaluators = {iou_type: coco_eval.ChunkedCocoEval(dataset.coco, iou_type, image_ids, COCO_CATEGORY_IDS)
                  for iou_type in ("bbox", "segm")}
    # Each image's detections go to both files and both evaluators, then are dropped: memory
    # does not grow with the dataset as it did when every detection was kept for the end.
    with coco_eval.results_json(det_dir / "detections_bbox.json") as bbox_file, \
            coco_eval.results_json(det_dir / "detections_segm.json") as segm_file:
        found_per_image = map_with_progress(work, samples, args.workers, desc="Postprocess")
        for image_id, detections in zip(image_ids, found_per_image):
            bbox_results, segm_results = coco_results(detections, with_segm_bbox=not args.segm_area_from_mask)
            bbox_file.write(bbox_results)
            segm_file.write(segm_results)
            evaluators["bbox"].add_image(image_id, bbox_results)
            evaluators["segm"].add_image(image_id, segm_results)
    detection_count = bbox_file.count
    stats = {iou_type: evaluator.summarize(COCO_CLASSES) for iou_type, evaluator in evaluators.items()}
    print(coco_eval.per_class_table(stats))
    report = {"bbox": stats["bbox"], "segm": stats["segm"], "mmdet": coco_eval.mmdet_summary(stats),
              "images": len(samples), "images_left_out": len(missing), "detections": detection_count,
              "segm_area": "mask" if args.segm_area_from_mask else "box (mmdet 2.8)",
              "result_dir": str(result_dir)}
    write_json_atomic(save_path, report)
    print(f"bbox mAP: {stats['bbox']['AP']:.4f}  segm mAP: {stats['segm']['AP']:.4f}  "
          f"({detection_count} detections on {len(samples)} images; metrics written to {save_path})")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
