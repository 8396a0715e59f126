"""Dataset readers in their real on-disk layouts (VOC2012, Cityscapes, COCO) and label tables.

Each reader lists samples by id/name and fails with a one-line UserError naming the missing
folder or file before any work starts.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from common.cli import UserError


# ---- PASCAL VOC 2012 ---------------------------------------------------------------------

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
VOC_IGNORE = 255


class VOCSegmentation:
    """VOC2012 segmentation split: `<voc_root>/ImageSets/Segmentation/<split>.txt` ids,
    `JPEGImages/<id>.jpg` images, `SegmentationClass/<id>.png` palette labels (255 = void).

    `voc_root` is the `VOC2012` folder; `from_parent` accepts the folder holding `VOCdevkit`
    (the guides' two conventions: preprocess gets VOC2012, postprocess its grandparent).
    """

    def __init__(self, voc_root: str | Path, split: str = "val", ids: list[str] | None = None):
        self.root = Path(voc_root)
        if not self.root.is_dir():
            raise UserError(f"{self.root}: VOC2012 folder not found")
        self.ids = list(ids) if ids is not None else read_id_list(self.split_file(split))
        if not self.ids:
            raise UserError(f"{self.split_file(split)}: no image ids")

    @classmethod
    def from_parent(cls, parent: str | Path, split: str = "val") -> "VOCSegmentation":
        parent = Path(parent)
        for candidate in (parent / "VOCdevkit" / "VOC2012", parent / "VOC2012", parent):
            if (candidate / "ImageSets" / "Segmentation").is_dir():
                return cls(candidate, split)
        raise UserError(f"{parent}: no VOCdevkit/VOC2012/ImageSets/Segmentation below this folder")

    def split_file(self, split: str) -> Path:
        return self.root / "ImageSets" / "Segmentation" / f"{split}.txt"

    def image_path(self, image_id: str) -> Path:
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def label_path(self, image_id: str) -> Path:
        return self.root / "SegmentationClass" / f"{image_id}.png"

    def check_files(self, labels: bool = True) -> None:
        """Fail before any work when an image (or label) of the split is missing."""
        kinds = [("image", self.image_path)] + ([("label", self.label_path)] if labels else [])
        for kind, path_of in kinds:
            missing = [i for i in self.ids if not path_of(i).is_file()]
            if missing:
                raise UserError(f"{path_of(missing[0])}: {kind} missing "
                                f"({len(missing)} of {len(self.ids)} ids, first: {', '.join(missing[:3])})")

    def read_image_rgb(self, image_id: str) -> np.ndarray:
        return read_image_rgb(self.image_path(image_id))

    def read_label(self, image_id: str) -> np.ndarray:
        return read_palette_label(self.label_path(image_id))

    def __len__(self) -> int:
        return len(self.ids)


def read_id_list(path: str | Path) -> list[str]:
    """One id per line; extra columns (upstream list formats) are ignored after the first."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: id list not found")
    ids = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            first = line.split()[0]
            ids.append(Path(first).stem if "/" in first else first)
    return ids


def read_image_rgb(path: str | Path) -> np.ndarray:
    """HWC uint8 RGB, decoded with PIL (the guides' decoder); unreadable files are a UserError."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise UserError(f"{path}: image not found") from None
    except OSError as err:
        raise UserError(f"{path}: unreadable image ({err})") from None


def read_palette_label(path: str | Path) -> np.ndarray:
    """Class-index label from a palette (or grey) PNG, HW uint8; never converted to RGB."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise UserError(f"{path}: label PNG has mode {image.mode}, expected palette or grey")
            return np.asarray(image)
    except FileNotFoundError:
        raise UserError(f"{path}: label not found") from None
    except UserError:
        raise
    except OSError as err:
        raise UserError(f"{path}: unreadable label ({err})") from None
