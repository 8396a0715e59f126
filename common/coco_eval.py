"""COCO instance evaluation (pycocotools) the way mmdetection 2.8's CocoDataset.evaluate does it.

- Result entries: bbox `[x, y, x2 - x, y2 - y]` (no +1), score, category_id; segm entries
  carry the RLE (counts as str) AND the same bbox. pycocotools' loadRes then takes the box
  area for segm detections, which changes segm APs/APm/APl (not AP); mmdet fixed that only in
  2.12, so `segm_area_from_mask=True` gives the later behaviour.
- COCOeval with params.catIds = the 80 category ids, imgIds = the evaluated images,
  maxDets = [100, 300, 1000]; per-class AP as mmdet's `classwise=True`.
- No detection at all is a valid result (AP 0 where ground truth exists), not a crash.

Memory: instead of one COCOeval over every detection (which holds all results, all IoU
matrices and every per-image record at once), `ChunkedCocoEval` runs COCOeval.evaluate() on
a few images at a time and keeps, per image, only the four arrays accumulate() reads, packed
into a handful of numpy arrays (about 30 bytes per detection and area range). accumulate() and
summarize() then run once over all images, so every number is the single-shot one: matching
is per (image, category) in COCOeval, and accumulate() sees the same values in the same order.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from collections.abc import Sequence as SequenceABC
from typing import Iterable, Iterator, Sequence

import numpy as np

from common.fsio import atomic_path

MAX_DETS = (100, 300, 1000)
# Names of COCOeval.stats for maxDets (100, 300, 1000): pycocotools takes AP at maxDets[2]
# and AR at each maxDets, then AR per area at maxDets[2].
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              f"AR{MAX_DETS[0]}", f"AR{MAX_DETS[1]}", f"AR{MAX_DETS[2]}", "ARs", "ARm", "ARl")
MMDET_KEYS = ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l")
# Images per COCOeval.evaluate() call: bounds the detections, IoU matrices and full per-image
# records held at once; the result does not depend on it.
EVAL_CHUNK_IMAGES = 64


def encode_mask(mask: np.ndarray) -> dict:
    """Binary HxW mask -> compressed RLE with str counts (mmdet encode_mask_results + results2json)."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def xyxy_to_xywh(box: Sequence[float]) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return [x1, y1, x2 - x1, y2 - y1]


# ---- results files, written as they come --------------------------------------------------------

class ResultsJsonWriter:
    """A COCO results file (one JSON array) written entry by entry: `json.load` gives the list."""

    def __init__(self, handle: io.TextIOBase):
        self._handle = handle
        self.count = 0

    def write(self, entries: Iterable[dict]) -> None:
        for entry in entries:
            # one entry per line: small to stream, and the file still parses as one array
            self._handle.write(("[\n" if self.count == 0 else ",\n") + json.dumps(entry))
            self.count += 1

    def close(self) -> None:
        self._handle.write("[]\n" if self.count == 0 else "\n]\n")


@contextlib.contextmanager
def results_json(path: str | os.PathLike) -> Iterator[ResultsJsonWriter]:
    """Write `path` through a temporary name; it appears under its name only once complete."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        writer = ResultsJsonWriter(handle)
        yield writer
        writer.close()


# ---- evaluation ------------------------------------------------------------------------------

def evaluate(coco_gt, results: list[dict], iou_type: str, image_ids: Sequence[int],
             category_ids: Sequence[int], class_names: Sequence[str], verbose: bool = True,
             chunk_images: int | None = None) -> dict:
    """Run COCOeval for 'bbox' or 'segm'; returns {stat name: value, ..., 'per_class_AP': {...}}."""
    evaluator = ChunkedCocoEval(coco_gt, iou_type, image_ids, category_ids, chunk_images)
    by_image: dict[int, list[dict]] = {}
    for entry in results:
        # as in COCOeval, results of images outside image_ids are not scored
        if int(entry["image_id"]) in evaluator.image_id_set:
            by_image.setdefault(int(entry["image_id"]), []).append(entry)
    for image_id, entries in by_image.items():
        evaluator.add_image(image_id, entries)
    return evaluator.summarize(class_names, verbose)


class ChunkedCocoEval:
    """COCOeval of one iou type fed image by image; `summarize()` gives `evaluate()`'s dict.

    Each image's results must come in one `add_image` call (an image's detections are matched
    together). Images of `image_ids` never added are evaluated without detections, as
    COCOeval does. Entries must be alike (all with a bbox or none): loadRes picks the area
    rule from the first entry it sees.
    """

    def __init__(self, coco_gt, iou_type: str, image_ids: Sequence[int], category_ids: Sequence[int],
                 chunk_images: int | None = None):
        chunk_images = EVAL_CHUNK_IMAGES if chunk_images is None else chunk_images
        if chunk_images < 1:
            raise ValueError(f"chunk_images must be >= 1, got {chunk_images}")
        self.coco_gt = coco_gt
        self.iou_type = iou_type
        # COCOeval.evaluate() sorts and de-duplicates both lists; accumulate() relies on that order.
        self.image_ids = [int(i) for i in np.unique(np.asarray(image_ids, dtype=np.int64))]
        self.category_ids = [int(c) for c in np.unique(np.asarray(category_ids, dtype=np.int64))]
        self.chunk_images = chunk_images
        self._pending: dict[int, list[dict]] = {}
        self._done: dict[int, _ImageRecords | None] = {}
        self.image_id_set = frozenset(self.image_ids)

    def add_image(self, image_id: int, results: Iterable[dict]) -> None:
        image_id = int(image_id)
        if image_id not in self.image_id_set:
            raise ValueError(f"image id {image_id} is not one of the evaluated images")
        if image_id in self._pending or image_id in self._done:
            raise ValueError(f"image id {image_id} added twice")
        # loadRes adds keys to each entry (id, area, ...): work on copies, the caller's stay as given
        self._pending[image_id] = [dict(entry) for entry in results]
        if len(self._pending) >= self.chunk_images:
            self._evaluate_pending()

    def accumulate(self):
        """Evaluate what is left, then COCOeval.accumulate() once over every image; returns the COCOeval."""
        for image_id in self.image_ids:
            if image_id not in self._done and image_id not in self._pending:
                self.add_image(image_id, [])
        self._evaluate_pending()
        evaluator = self._new_cocoeval(None, self.image_ids)
        evaluator.evalImgs = _EvalImgsView(self._done, self.image_ids, len(self.category_ids),
                                           len(evaluator.params.areaRng))
        evaluator._paramsEval = copy.deepcopy(evaluator.params)  # what evaluate() would have left
        with contextlib.redirect_stdout(io.StringIO()):  # accumulate prints timing lines
            evaluator.accumulate()
        return evaluator

    def summarize(self, class_names: Sequence[str], verbose: bool = True) -> dict:
        """accumulate() and COCOeval.summarize(): the 12 stats and per-class AP."""
        evaluator = self.accumulate()
        if verbose:
            print(f"Evaluate annotation type *{self.iou_type}*")
        evaluator.summarize()
        stats = {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats)}
        stats["per_class_AP"] = per_class_ap(evaluator, class_names)
        return stats

    def _new_cocoeval(self, coco_dt, image_ids: list[int]):
        from pycocotools.cocoeval import COCOeval
        evaluator = COCOeval(self.coco_gt, coco_dt, self.iou_type)
        evaluator.params.catIds = list(self.category_ids)
        evaluator.params.imgIds = list(image_ids)
        evaluator.params.maxDets = list(MAX_DETS)
        return evaluator

    def _evaluate_pending(self) -> None:
        if not self._pending:
            return
        chunk_ids = sorted(self._pending)
        results = [entry for image_id in chunk_ids for entry in self._pending[image_id]]
        self._pending = {}
        evaluator = self._new_cocoeval(_load_results(self.coco_gt, results), chunk_ids)
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator.evaluate()
        slots = len(self.category_ids) * len(evaluator.params.areaRng)
        for position, image_id in enumerate(chunk_ids):
            # evalImgs is laid out [category][area range][image]: this image's record of each pair
            records = evaluator.evalImgs[position::len(chunk_ids)]
            assert len(records) == slots
            self._done[image_id] = _ImageRecords.pack(records)


class _ImageRecords:
    """One image's evalImgs entries, reduced to what accumulate() reads and packed together.

    Per (category, area range) slot with an entry: the detection scores, the match and ignore
    flags at each IoU threshold (matched gt ids become True: accumulate only tests them for
    non-zero) and the ground-truth ignore flags, concatenated over slots.
    """

    __slots__ = ("slots", "det_ends", "gt_ends", "scores", "matched", "ignored", "gt_ignored")

    @classmethod
    def pack(cls, records: list[dict | None]) -> "_ImageRecords | None":
        present = [(slot, record) for slot, record in enumerate(records) if record is not None]
        if not present:
            return None
        packed = cls()
        packed.slots = np.array([slot for slot, _ in present], dtype=np.int32)
        packed.det_ends = np.cumsum([len(r["dtScores"]) for _, r in present]).astype(np.int64)
        packed.gt_ends = np.cumsum([len(r["gtIgnore"]) for _, r in present]).astype(np.int64)
        packed.scores = np.concatenate([np.asarray(r["dtScores"], dtype=np.float64) for _, r in present])
        packed.matched = np.concatenate([np.asarray(r["dtMatches"]) != 0 for _, r in present], axis=1)
        packed.ignored = np.concatenate([np.asarray(r["dtIgnore"]) != 0 for _, r in present], axis=1)
        packed.gt_ignored = np.concatenate([np.asarray(r["gtIgnore"]) != 0 for _, r in present])
        return packed

    def record(self, slot: int) -> "_RecordView | None":
        index = int(np.searchsorted(self.slots, slot))
        if index == len(self.slots) or self.slots[index] != slot:
            return None
        return _RecordView(self, index)


class _RecordView:
    """An evalImgs entry as accumulate() reads it (`e['dtScores']`, ...), sliced on demand."""

    __slots__ = ("_packed", "_index")

    def __init__(self, packed: _ImageRecords, index: int):
        self._packed, self._index = packed, index

    def __getitem__(self, key: str) -> np.ndarray:
        packed, index = self._packed, self._index
        det = slice(packed.det_ends[index - 1] if index else 0, packed.det_ends[index])
        if key == "dtScores":
            return packed.scores[det]
        if key == "dtMatches":
            return packed.matched[:, det]
        if key == "dtIgnore":
            return packed.ignored[:, det]
        if key == "gtIgnore":
            return packed.gt_ignored[packed.gt_ends[index - 1] if index else 0:packed.gt_ends[index]]
        raise KeyError(key)


class _EvalImgsView(SequenceABC):
    """COCOeval.evalImgs for accumulate(): index k*A*I + a*I + i -> that entry (or None), built on read."""

    def __init__(self, done: dict, image_ids: list[int], num_categories: int, num_areas: int):
        self._done, self._image_ids = done, image_ids
        self._num_areas = num_areas
        self._length = num_categories * num_areas * len(image_ids)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int):
        if not 0 <= index < self._length:
            raise IndexError(index)
        slot, image_index = divmod(index, len(self._image_ids))  # slot = k*A + a
        packed = self._done[self._image_ids[image_index]]
        return None if packed is None else packed.record(slot)


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
