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
a few images at a time and keeps, per image, only what accumulate() reads, packed into a
handful of numpy arrays (about 24 bytes per detection). accumulate() and
summarize() then run once over all images, so every number is the single-shot one: matching
is per (image, category) in COCOeval, and accumulate() sees the same values in the same order.
"""
from __future__ import annotations

import array
import contextlib
import copy
import io
import json
import os
from collections.abc import Sequence as SequenceABC
from typing import Iterable, Iterator, Sequence

import numpy as np

from common.files.atomic import atomic_path

MAX_DETS = (100, 300, 1000)
# Names of COCOeval.stats for maxDets (100, 300, 1000): pycocotools takes AP at maxDets[2]
# and AR at each maxDets, then AR per area at maxDets[2].
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              f"AR{MAX_DETS[0]}", f"AR{MAX_DETS[1]}", f"AR{MAX_DETS[2]}", "ARs", "ARm", "ARl")
MMDET_KEYS = ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l")
# Images per COCOeval.evaluate() call: bounds the detections, IoU matrices and full per-image
# records held at once (the result does not depend on it). On the benchmark's 100 random
# detections per image, 64 images held about 40 MiB more at the peak than 8; a chunk of 8
# costs about 4 ms of set-up, against about 50 ms per image for the rest of the postprocess.
EVAL_CHUNK_IMAGES = 8


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
        for position, image_id in enumerate(chunk_ids):
            # evalImgs is laid out [category][area range][image]: this image's entry of each pair
            entries = evaluator.evalImgs[position::len(chunk_ids)]
            self._done[image_id] = _ImageRecords.pack(entries, len(evaluator.params.areaRng))


class _ImageRecords:
    """One image's evalImgs entries, reduced to what accumulate() reads and packed together.

    COCOeval makes an entry for a (category, area range) pair whenever the image has a
    detection or a ground truth of that category, in every area range alike, and the entry's
    detections (sorted by score, cut at maxDets) do not depend on the area range: only the
    flags do. So per category the scores are kept once; per area range and detection, the match
    and ignore flags of the IoU thresholds as the bits of a uint16 (a matched gt id becomes 1:
    accumulate only tests it for non-zero); per area range and ground truth, its ignore flag.
    About 24 bytes per detection instead of the entry dicts' kilobytes.
    """

    __slots__ = ("position_of", "det_ends", "gt_ends", "scores", "match_bits", "ignore_bits", "gt_ignored",
                 "num_thresholds")

    @classmethod
    def pack(cls, entries: list[dict | None], num_areas: int) -> "_ImageRecords | None":
        """`entries`: the image's evalImgs entries in [category][area range] order."""
        groups = [entries[start:start + num_areas] for start in range(0, len(entries), num_areas)]
        present = [(k, group) for k, group in enumerate(groups) if group[0] is not None]
        if not present:
            return None
        for _, group in present:
            if any(entry is None or list(entry["dtScores"]) != list(group[0]["dtScores"]) for entry in group):
                raise RuntimeError("COCOeval entries differ across area ranges in more than their flags")
        packed = cls()
        packed.num_thresholds = len(present[0][1][0]["dtMatches"])
        # category index -> 1 + its position among the present ones (0: no entry); O(1) lookups
        packed.position_of = array.array("H", [0] * len(groups))
        for position, (k, _) in enumerate(present):
            packed.position_of[k] = position + 1
        packed.det_ends = np.cumsum([0] + [len(group[0]["dtScores"]) for _, group in present], dtype=np.int64)
        packed.gt_ends = np.cumsum([0] + [len(group[0]["gtIgnore"]) for _, group in present], dtype=np.int64)
        packed.scores = np.concatenate([np.asarray(group[0]["dtScores"], dtype=np.float64) for _, group in present])
        packed.match_bits = np.stack([_flag_bits(np.concatenate([group[a]["dtMatches"] for _, group in present], axis=1))
                                      for a in range(num_areas)])
        packed.ignore_bits = np.stack([_flag_bits(np.concatenate([group[a]["dtIgnore"] for _, group in present], axis=1))
                                       for a in range(num_areas)])
        packed.gt_ignored = np.stack([np.concatenate([np.asarray(group[a]["gtIgnore"]) != 0 for _, group in present])
                                      for a in range(num_areas)])
        return packed

    def entry(self, category_index: int, area_index: int) -> dict | None:
        """The evalImgs entry as accumulate() reads it, or None where COCOeval had none."""
        position = self.position_of[category_index] - 1
        if position < 0:
            return None
        det = slice(self.det_ends[position], self.det_ends[position + 1])
        return {"dtScores": self.scores[det],
                "dtMatches": _unpack_flags(self.match_bits[area_index, det], self.num_thresholds),
                "dtIgnore": _unpack_flags(self.ignore_bits[area_index, det], self.num_thresholds),
                "gtIgnore": self.gt_ignored[area_index, self.gt_ends[position]:self.gt_ends[position + 1]]}


def _flag_bits(flags: np.ndarray) -> np.ndarray:
    """[thresholds, detections] flags (non-zero = set) -> one uint16 per detection, bit t = threshold t."""
    flags = np.asarray(flags) != 0
    if len(flags) > 16:
        raise ValueError(f"{len(flags)} IoU thresholds do not fit the 16 flag bits")
    shifts = np.arange(len(flags), dtype=np.uint16)[:, None]
    return np.bitwise_or.reduce(flags.astype(np.uint16) << shifts, axis=0).astype(np.uint16)


_UNPACK_TABLES: dict[int, np.ndarray] = {}


def _unpack_flags(bits: np.ndarray, num_thresholds: int) -> np.ndarray:
    """Inverse of _flag_bits: [thresholds, detections] bool, through a table of every bit pattern."""
    table = _UNPACK_TABLES.get(num_thresholds)
    if table is None:
        patterns = np.arange(2 ** num_thresholds, dtype=np.int64)[:, None]
        table = ((patterns >> np.arange(num_thresholds)) & 1).astype(bool)
        _UNPACK_TABLES[num_thresholds] = table
    return table[bits].T


class _EvalImgsView(SequenceABC):
    """COCOeval.evalImgs for accumulate(): index k*A*I + a*I + i -> that entry (or None), built on read.

    accumulate() reads one (category, area range) slot over every image once per maxDets value
    in turn, so the entries of the slot being read are kept until it moves to the next one.
    """

    def __init__(self, done: dict, image_ids: list[int], num_categories: int, num_areas: int):
        self._done, self._image_ids = done, image_ids
        self._num_areas = num_areas
        self._length = num_categories * num_areas * len(image_ids)
        self._slot, self._slot_entries = -1, {}

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int):
        if not 0 <= index < self._length:
            raise IndexError(index)
        slot, image_index = divmod(index, len(self._image_ids))
        if slot != self._slot:
            self._slot, self._slot_entries = slot, {}
        if image_index not in self._slot_entries:
            packed = self._done[self._image_ids[image_index]]
            self._slot_entries[image_index] = None if packed is None else packed.entry(*divmod(slot, self._num_areas))
        return self._slot_entries[image_index]


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
