"""Semantic-segmentation scoring: one streaming confusion matrix, per-class IoU, mIoU.

The matrix is `cm[gt, pred]` over every valid pixel of the whole dataset (not a mean of
per-image IoUs), so memory is num_classes^2 whatever the dataset size.
"""
from __future__ import annotations

import numpy as np

from common.cli import UserError


class ConfusionMatrix:
    """Accumulate `update(label_ids, pred_ids)` per image, then read IoUs."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.images = 0
        # Label pixels whose id is outside the dataset's label set, counted as void on request
        # (--unknown-ids-as-void), and the images holding them: reported, never silent.
        self.unknown_as_void_pixels = 0
        self.unknown_as_void_images = 0

    def note_unknown_as_void(self, pixels: int) -> None:
        if pixels:
            self.unknown_as_void_pixels += int(pixels)
            self.unknown_as_void_images += 1

    def update(self, target: np.ndarray, pred: np.ndarray) -> None:
        target = np.asarray(target)
        pred = np.asarray(pred)
        if target.shape != pred.shape:
            raise UserError(f"prediction shape {pred.shape} does not match label shape {target.shape}")
        if target.dtype == np.uint8 and pred.dtype == np.uint8 and int(pred.max(initial=0)) < self.num_classes:
            counts = self._counts_uint8(target, pred)
        else:
            counts = self._counts_masked(target, pred)
        self.matrix += counts.reshape(self.num_classes, self.num_classes)
        self.images += 1

    def _counts_masked(self, target: np.ndarray, pred: np.ndarray) -> np.ndarray:
        # Pixels labelled ignore (or any id outside 0..C-1, e.g. void) do not count.
        valid = (target >= 0) & (target < self.num_classes) & (target != self.ignore_index)
        gt = target[valid].astype(np.int64)
        pr = pred[valid].astype(np.int64)
        if pr.size and (pr.min() < 0 or pr.max() >= self.num_classes):
            raise UserError(f"prediction holds class ids outside 0..{self.num_classes - 1}")
        return np.bincount(gt * self.num_classes + pr, minlength=self.num_classes ** 2)

    def _counts_uint8(self, target: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """The same counts without boolean masking (2-3x faster on Cityscapes-size maps):
        a lookup table sends every label id to its row offset, and the ids that do not count
        to one extra row past the matrix, dropped afterwards."""
        classes = self.num_classes
        row_offset = np.full(256, classes * classes, dtype=np.intp)
        row_offset[:min(classes, 256)] = np.arange(min(classes, 256)) * classes
        if 0 <= self.ignore_index < classes:
            row_offset[self.ignore_index] = classes * classes
        flat = row_offset.take(target.ravel())
        flat += pred.ravel()
        return np.bincount(flat, minlength=classes * (classes + 1))[:classes * classes]

    def merge(self, other: "ConfusionMatrix") -> None:
        self.matrix += other.matrix
        self.images += other.images
        self.unknown_as_void_pixels += other.unknown_as_void_pixels
        self.unknown_as_void_images += other.unknown_as_void_images

    def require_scored_pixels(self, where: str) -> None:
        """A split whose labels hold no pixel of any class (all void) has no IoU at all: one line
        instead of a mIoU of nan or 0 with exit code 0."""
        if self.images and not self.matrix.sum():
            raise UserError(f"{where}: no label pixel of the {self.images} scored image(s) holds a class "
                            "(every pixel is void or ignored): the metric is undefined")

    def iou_per_class(self) -> np.ndarray:
        """IoU = TP / (TP + FP + FN) per class; NaN where the class is absent from both labels
        and predictions."""
        stats = self.class_statistics()
        return np.where(stats["union"] > 0, stats["iou"], np.nan)

    def class_statistics(self) -> dict[str, np.ndarray]:
        """Per class: IoU, precision and recall (0 where the denominator is 0, as upstream's
        eval scripts), ground-truth pixels and the IoU's union."""
        true_pos = np.diag(self.matrix).astype(np.float64)
        false_neg = self.matrix.sum(1) - true_pos
        false_pos = self.matrix.sum(0) - true_pos
        union = true_pos + false_neg + false_pos

        def ratio(denominator):
            return np.divide(true_pos, denominator, out=np.zeros_like(true_pos), where=denominator > 0)

        return {"iou": ratio(union), "precision": ratio(true_pos + false_pos),
                "recall": ratio(true_pos + false_neg), "gt_pixels": self.matrix.sum(1), "union": union}

    def mean_iou(self, present_only: bool = True) -> float:
        """densetorch/Cityscapes style: mean over classes with a non-empty union.

        With `present_only=False` an absent class counts as IoU 0 (mmseg/HRNet style
        `nanmean` differs only for classes absent from both sides).
        """
        iou = self.iou_per_class()
        if present_only:
            return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
        return float(np.nan_to_num(iou, nan=0.0).mean())

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.diag(self.matrix).sum() / total) if total else float("nan")

    def to_dict(self, class_names: list[str] | None = None) -> dict:
        names = class_names or [str(i) for i in range(self.num_classes)]
        iou = self.iou_per_class()
        return {
            "miou": self.mean_iou(),
            "pixel_accuracy": self.pixel_accuracy(),
            "images": self.images,
            "label_pixels_unknown_as_void": self.unknown_as_void_pixels,
            "per_class_iou": {name: (None if np.isnan(v) else float(v)) for name, v in zip(names, iou)},
        }

    def table(self, class_names: list[str] | None = None) -> str:
        names = class_names or [str(i) for i in range(self.num_classes)]
        width = max(len(n) for n in names + ["class"])
        lines = [f"{'class':<{width}}  IoU"]
        for name, value in zip(names, self.iou_per_class()):
            lines.append(f"{name:<{width}}  {'  n/a' if np.isnan(value) else f'{value:.4f}'}")
        lines.append(f"{'mIoU':<{width}}  {self.mean_iou():.4f}  over {self.images} images")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()
