"""PASCAL VOC 2012 segmentation: class names, the split reader, and the sample lists that name
image and label files relative to a data root.

1-stage-wseg's `data/val_voc.txt` (and the ModelZoo copy) hold one image per line as two paths
relative to the data root, `voc/VOCdevkit/VOC2012/JPEGImages/<id>.jpg
voc/VOCdevkit/VOC2012/SegmentationClass/<id>.png`. VOC's own `ImageSets/Segmentation/val.txt`
holds bare ids; those are looked up in the VOC2012 folder found below the data root. Either
way every sample gets its id, image path and label path, and samples are matched by id.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.cli import UserError
from common.data.images import read_image_rgb, read_palette_label
from common.data.labels import LabelSet, unknown_id_pixels
from common.data.lists import read_list_lines, refuse_duplicates

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
VOC_IGNORE = 255
VOC_LABEL_SET = LabelSet("VOC", tuple(range(len(VOC_CLASSES))) + (VOC_IGNORE,),
                         f"0..{len(VOC_CLASSES) - 1} and {VOC_IGNORE} (void)")


def voc_palette() -> list[int]:
    """The standard VOC colour map (bit-interleaved), 256 RGB entries flattened."""
    palette = []
    for index in range(256):
        red = green = blue = 0
        value = index
        for shift in range(7, -1, -1):
            red |= ((value >> 0) & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        palette += [red, green, blue]
    return palette


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
        return cls(find_voc2012(parent), split)

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

    def read_label(self, image_id: str, unknown_as_void: bool = False) -> np.ndarray:
        return read_voc_label(self.label_path(image_id), unknown_as_void)[0]

    def __len__(self) -> int:
        return len(self.ids)


def read_id_list(path: str | Path) -> list[str]:
    """One id per line (VOC's ImageSets lists); upstream's `IMAGE LABEL` path lines give the
    image's stem, and VOC's per-class lists (`<id> <-1|0|1>`) their first column. An id listed
    twice is an error naming both lines."""
    path = Path(path)
    rows = []
    for line_no, fields in read_list_lines(path, "id list"):
        first = fields[0]
        if len(fields) == 1 or (len(fields) == 2 and "/" in first) or _flag_columns(fields[1:]):
            rows.append((line_no, _id_of(first)))
        else:
            raise UserError(f"{path}:{line_no}: expected one id per line, got {len(fields)} fields "
                            f"({' '.join(fields)[:60]!r}); VOC ids hold no spaces")
    refuse_duplicates(path, rows)
    return [image_id for _, image_id in rows]


def _id_of(field: str) -> str:
    """A bare id as it is; a path or file name (`JPEGImages/x.jpg`) gives its stem."""
    return Path(field).stem if "/" in field or field.lower().endswith((".jpg", ".png")) else field


def _flag_columns(fields: list[str]) -> bool:
    """VOC's per-class lists: `<id> -1`, `<id>  0`, `<id>  1`."""
    return all(field in ("-1", "0", "1") for field in fields)


def read_voc_label(path: str | Path, unknown_as_void: bool = False) -> tuple[np.ndarray, int]:
    """A VOC label (palette or grey PNG, HW uint8) and the count of its pixels whose id is
    outside 0..20 and 255: an error unless `unknown_as_void` (they then count as void)."""
    label = read_palette_label(path)
    unknown = unknown_id_pixels(label, VOC_LABEL_SET, path, unknown_as_void)
    if unknown:
        label = np.where(VOC_LABEL_SET.valid_lut()[label], label, VOC_IGNORE).astype(np.uint8)
    return label, unknown


# Where the VOC2012 folder may sit below the data root, most specific first: the guides'
# `data/voc/VOCdevkit/VOC2012`, a bare `VOCdevkit/VOC2012`, or the VOC2012 folder itself.
VOC2012_CANDIDATES = ("voc/VOCdevkit/VOC2012", "VOCdevkit/VOC2012", "VOC2012", ".")


@dataclass(frozen=True)
class ListedSample:
    image_id: str
    image_path: Path
    label_path: Path


def find_voc2012(data_root: str | Path) -> Path:
    data_root = Path(data_root)
    for candidate in VOC2012_CANDIDATES:
        folder = data_root / candidate
        if (folder / "JPEGImages").is_dir():
            return folder
    raise UserError(f"{data_root}: no VOC2012 folder (with JPEGImages) at "
                    f"{', '.join(VOC2012_CANDIDATES)} below it")


def read_sample_list(data_root: str | Path, list_path: str | Path) -> list[ListedSample]:
    """Samples of a list in either format; ids must be unique."""
    data_root, list_path = Path(data_root), Path(list_path)
    if not list_path.exists():
        raise UserError(f"{list_path}: file list not found")
    if not data_root.is_dir():
        raise UserError(f"{data_root}: data folder not found")
    samples, rows, voc_root = [], [], None
    for line_no, fields in read_list_lines(list_path, "file list"):
        if len(fields) == 2:
            image_path, label_path = data_root / fields[0], data_root / fields[1]
            image_id = Path(fields[0]).stem
        elif len(fields) == 1:
            voc_root = voc_root or find_voc2012(data_root)
            image_id = _id_of(fields[0])
            image_path = voc_root / "JPEGImages" / f"{image_id}.jpg"
            label_path = voc_root / "SegmentationClass" / f"{image_id}.png"
        else:
            raise UserError(f"{list_path}:{line_no}: expected 'IMAGE LABEL' paths or one id, "
                            f"got {len(fields)} fields (paths are split at spaces: a path holding a "
                            "space is ambiguous in this format)")
        rows.append((line_no, image_id))
        samples.append(ListedSample(image_id, image_path, label_path))
    refuse_duplicates(list_path, rows)
    if not samples:
        raise UserError(f"{list_path}: no samples listed")
    return samples


def check_exist(samples: list[ListedSample], labels: bool = True) -> None:
    """Fail before any work when a listed image (or label) file is missing."""
    kinds = [("image", "image_path")] + ([("label", "label_path")] if labels else [])
    for kind, attribute in kinds:
        missing = [s for s in samples if not getattr(s, attribute).is_file()]
        if missing:
            raise UserError(f"{getattr(missing[0], attribute)}: {kind} missing ({len(missing)} of "
                            f"{len(samples)} listed, first ids: "
                            f"{', '.join(s.image_id for s in missing[:3])})")
