"""COCO instance evaluation (pycocotools) the way mmdetection 2.8's CocoDataset.evaluate does it.

- Result entries: bbox `[x, y, x2 - x, y2 - y]` (no +1), score, category_id; segm entries
  carry the RLE (counts as str) AND the same bbox. pycocotools' loadRes then takes the box
  area for segm detections, which changes segm APs/APm/APl (not AP); mmdet fixed that only in
  2.12, so `segm_area_from_mask=True` gives the later behaviour.
- COCOeval with params.catIds = the 80 category ids, imgIds = the evaluated images,
  maxDets = [100, 300, 1000]; per-class AP as mmdet's `classwise=True`.
- No detection at all is a valid result (AP 0 where ground truth exists), not a crash.
"""
from __future__ import annotations

import contextlib
import io
from typing import Sequence

import numpy as np

MAX_DETS = (100, 300, 1000)
# Names of COCOeval.stats for maxDets (100, 300, 1000): pycocotools takes AP at maxDets[2]
# and AR at each maxDets, then AR per area at maxDets[2].
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              f"AR{MAX_DETS[0]}", f"AR{MAX_DETS[1]}", f"AR{MAX_DETS[2]}", "ARs", "ARm", "ARl")
MMDET_KEYS = ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l")


def encode_mask(mask: np.ndarray) -> dict:
    """Binary HxW mask -> compressed RLE with str counts (mmdet encode_mask_results + results2json)."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def xyxy_to_xywh(box: Sequence[float]) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return [x1, y1, x2 - x1, y2 - y1]


def evaluate(coco_gt, results: list[dict], iou_type: str, image_ids: Sequence[int],
             category_ids: Sequence[int], class_names: Sequence[str], verbose: bool = True) -> dict:
    """Run COCOeval for 'bbox' or 'segm'; returns {stat name: value, ..., 'per_class_AP': {...}}."""
    from pycocotools.cocoeval import COCOeval

    coco_dt = _load_results(coco_gt, results)
    evaluator = COCOeval(coco_gt, coco_dt, iou_type)
    evaluator.params.catIds = list(category_ids)
    evaluator.params.imgIds = list(image_ids)
    evaluator.params.maxDets = list(MAX_DETS)
    log = io.StringIO()
    with contextlib.redirect_stdout(log):  # evaluate/accumulate print timing lines
        evaluator.evaluate()
        evaluator.accumulate()
    if verbose:
        print(f"Evaluate annotation type *{iou_type}*")
    evaluator.summarize()
    stats = {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats)}
    stats["per_class_AP"] = per_class_ap(evaluator, class_names)
    return stats


def _load_results(coco_gt, results: list[dict]):
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            return coco_gt.loadRes(results)
    # loadRes cannot take an empty list; an empty result set is still a valid evaluation.
    from pycocotools.coco import COCO
    empty = COCO()
    empty.dataset = {"images": list(coco_gt.dataset["images"]), "categories": list(coco_gt.dataset["categories"]),
                     "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    return empty


def per_class_ap(evaluator, class_names: Sequence[str]) -> dict:
    """AP over IoU .50:.95, all areas, last maxDets, per category (None: no ground truth)."""
    precisions = evaluator.eval["precision"]  # [iou, recall, category, area, maxDets]
    table = {}
    for index, name in enumerate(class_names):
        values = precisions[:, :, index, 0, -1]
        values = values[values > -1]
        table[name] = float(values.mean()) if values.size else None
    return table


def mmdet_summary(stats_by_type: dict) -> dict:
    """mmdet's eval_results keys, rounded to 3 decimals as mmdet prints them, plus copypaste."""
    summary = {}
    for iou_type, stats in stats_by_type.items():
        values = [stats[name] for name in STAT_NAMES[:6]]
        for key, value in zip(MMDET_KEYS, values):
            summary[f"{iou_type}_{key}"] = float(f"{value:.3f}")
        summary[f"{iou_type}_mAP_copypaste"] = " ".join(f"{v:.3f}" for v in values)
    return summary


def per_class_table(stats_by_type: dict) -> str:
    types = list(stats_by_type)
    names = list(next(iter(stats_by_type.values()))["per_class_AP"])
    width = max(len(n) for n in names + ["category"])
    lines = [f"{'category':<{width}}  " + "  ".join(f"{t + ' AP':>8}" for t in types)]
    for name in names:
        cells = []
        for iou_type in types:
            value = stats_by_type[iou_type]["per_class_AP"][name]
            cells.append(f"{'n/a':>8}" if value is None else f"{value:8.3f}")
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)
