"""Cityscapes fine: the label table (id, trainId, colour), the split reader, label lookup."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.cli import UserError
from common.data.images import read_palette_label
from common.data.labels import LabelSet, unknown_id_pixels


# ---- Cityscapes (fine annotations) --------------------------------------------------------
#
# Layout under `<root>/cityscapes/` (the guides' `--src_path` holds `cityscapes/`):
#   leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png   8-bit RGB
#   gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png    8-bit label ids 0..33
# (gtFine also holds _gtFine_instanceIds.png, 16-bit, and _gtFine_color.png). Samples are
# paired by their base name `<city>_<seq>_<frame>`, never by position in a listing.
#
# The label table is kept here rather than taken from `cityscapesscripts`: that package installs
# from PyPI but pulls matplotlib, requests and the obsolete `typing` backport into the env for
# one 35-row table. The rows below are its `helpers/labels.py` facts (id, trainId, colour);
# tests/unit/test_datasets_cityscapes.py checks the mapping against the upstream HRNet table and,
# when `cityscapesscripts` happens to be installed, against that package.

@dataclass(frozen=True)
class CityscapesLabel:
    name: str
    label_id: int
    train_id: int  # 255 = ignored in training and evaluation
    color_rgb: tuple[int, int, int]
    has_instances: bool


CITYSCAPES_IGNORE = 255
CITYSCAPES_LABELS = (
    CityscapesLabel("unlabeled", 0, 255, (0, 0, 0), False),
    CityscapesLabel("ego vehicle", 1, 255, (0, 0, 0), False),
    CityscapesLabel("rectification border", 2, 255, (0, 0, 0), False),
    CityscapesLabel("out of roi", 3, 255, (0, 0, 0), False),
    CityscapesLabel("static", 4, 255, (0, 0, 0), False),
    CityscapesLabel("dynamic", 5, 255, (111, 74, 0), False),
    CityscapesLabel("ground", 6, 255, (81, 0, 81), False),
    CityscapesLabel("road", 7, 0, (128, 64, 128), False),
    CityscapesLabel("sidewalk", 8, 1, (244, 35, 232), False),
    CityscapesLabel("parking", 9, 255, (250, 170, 160), False),
    CityscapesLabel("rail track", 10, 255, (230, 150, 140), False),
    CityscapesLabel("building", 11, 2, (70, 70, 70), False),
    CityscapesLabel("wall", 12, 3, (102, 102, 156), False),
    CityscapesLabel("fence", 13, 4, (190, 153, 153), False),
    CityscapesLabel("guard rail", 14, 255, (180, 165, 180), False),
    CityscapesLabel("bridge", 15, 255, (150, 100, 100), False),
    CityscapesLabel("tunnel", 16, 255, (150, 120, 90), False),
    CityscapesLabel("pole", 17, 5, (153, 153, 153), False),
    CityscapesLabel("polegroup", 18, 255, (153, 153, 153), False),
    CityscapesLabel("traffic light", 19, 6, (250, 170, 30), False),
    CityscapesLabel("traffic sign", 20, 7, (220, 220, 0), False),
    CityscapesLabel("vegetation", 21, 8, (107, 142, 35), False),
    CityscapesLabel("terrain", 22, 9, (152, 251, 152), False),
    CityscapesLabel("sky", 23, 10, (70, 130, 180), False),
    CityscapesLabel("person", 24, 11, (220, 20, 60), True),
    CityscapesLabel("rider", 25, 12, (255, 0, 0), True),
    CityscapesLabel("car", 26, 13, (0, 0, 142), True),
    CityscapesLabel("truck", 27, 14, (0, 0, 70), True),
    CityscapesLabel("bus", 28, 15, (0, 60, 100), True),
    CityscapesLabel("caravan", 29, 255, (0, 0, 90), True),
    CityscapesLabel("trailer", 30, 255, (0, 0, 110), True),
    CityscapesLabel("train", 31, 16, (0, 80, 100), True),
    CityscapesLabel("motorcycle", 32, 17, (0, 0, 230), True),
    CityscapesLabel("bicycle", 33, 18, (119, 11, 32), True),
)
# The 19 evaluated classes in trainId order (road ... bicycle).
CITYSCAPES_CLASSES = tuple(label.name for label in
                           sorted((l for l in CITYSCAPES_LABELS if l.train_id != CITYSCAPES_IGNORE),
                                  key=lambda l: l.train_id))
CITYSCAPES_NUM_CLASSES = len(CITYSCAPES_CLASSES)
# What a gtFine labelIds PNG holds: the ids 0..33 of the table. The licence plate (id -1) is
# never drawn by cityscapesScripts' json2labelImg (a negative id is skipped), so no other
# value, 255 included, is a Cityscapes label id.
CITYSCAPES_LABEL_SET = LabelSet("Cityscapes", tuple(label.label_id for label in CITYSCAPES_LABELS),
                                f"label ids 0..{max(label.label_id for label in CITYSCAPES_LABELS)}")
CITYSCAPES_SPLITS = ("train", "val", "test")
CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit.png"
CITYSCAPES_LABEL_SUFFIX = "_gtFine_labelIds.png"
CITYSCAPES_INSTANCE_SUFFIX = "_gtFine_instanceIds.png"
CITYSCAPES_COLOR_SUFFIX = "_gtFine_color.png"
# Suffixes cut from a file name to get the base name shared by image, labels and bins
# (`..._gtFine_labelIds.bin` is how the ModelZoo HRNet pack names its bins).
_CITYSCAPES_NAME_TAILS = ("_leftImg8bit", "_gtFine_labelIds", "_gtFine_instanceIds", "_gtFine_color",
                          "_gtFine_polygons")


def cityscapes_train_id_lut() -> np.ndarray:
    """256-entry uint8 lookup: label id -> trainId; every id outside 0..33 maps to 255."""
    lut = np.full(256, CITYSCAPES_IGNORE, dtype=np.uint8)
    for label in CITYSCAPES_LABELS:
        lut[label.label_id] = label.train_id
    return lut


CITYSCAPES_ID_TO_TRAIN_ID = cityscapes_train_id_lut()


def cityscapes_label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Remap a label-id image (uint8) to trainIds (uint8, 255 = ignore)."""
    label_ids = np.asarray(label_ids)
    if label_ids.dtype != np.uint8:
        if label_ids.size and (label_ids.min() < 0 or label_ids.max() > 255):
            raise ValueError("Cityscapes label ids must lie in 0..255")
        label_ids = label_ids.astype(np.uint8)
    return CITYSCAPES_ID_TO_TRAIN_ID[label_ids]


def cityscapes_train_id_colors() -> np.ndarray:
    """(256, 3) uint8 RGB palette indexed by trainId (ignore and unused entries black)."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for label in CITYSCAPES_LABELS:
        if label.train_id != CITYSCAPES_IGNORE:
            palette[label.train_id] = label.color_rgb
    return palette


def cityscapes_base_name(path: str | Path) -> str:
    """`frankfurt_000000_000294` from any of the dataset's or the bins' file names."""
    name = Path(path).name.split(".", 1)[0]
    for tail in _CITYSCAPES_NAME_TAILS:
        if name.endswith(tail):
            return name[: -len(tail)]
    return name


def cityscapes_image_of_label(label_path: str | Path) -> Path:
    """The image of a label: `<cs>/gtFine/<split>/<city>/<name>_gtFine_labelIds.png` ->
    `<cs>/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`."""
    label_path = Path(label_path)
    city_dir = label_path.parent
    split_dir = city_dir.parent
    return (split_dir.parent.parent / "leftImg8bit" / split_dir.name / city_dir.name
            / f"{cityscapes_base_name(label_path)}{CITYSCAPES_IMAGE_SUFFIX}")


def find_cityscapes_dir(root: str | Path) -> Path:
    """The `cityscapes` folder: `root/cityscapes` (the guides' convention) or `root` itself."""
    root = Path(root)
    for candidate in (root / "cityscapes", root):
        if (candidate / "leftImg8bit").is_dir():
            return candidate
    raise UserError(f"{root}: no cityscapes/leftImg8bit folder below this folder")


@dataclass(frozen=True)
class CityscapesSample:
    name: str  # <city>_<seq>_<frame>
    city: str
    image_path: Path
    label_path: Path  # may not exist when the reader was built with require_labels=False


class CityscapesFine:
    """One split of Cityscapes fine: images listed by city, each paired with its labels by name.

    `root` is the folder holding `cityscapes/` (or the `cityscapes` folder itself). Samples are
    ordered by (city, name), the order of the upstream list files.
    """

    def __init__(self, root: str | Path, split: str = "val", require_labels: bool = True):
        if split not in CITYSCAPES_SPLITS:
            raise UserError(f"unknown Cityscapes split '{split}' (expected one of {', '.join(CITYSCAPES_SPLITS)})")
        self.root = find_cityscapes_dir(root)
        self.split = split
        self.image_dir = self.root / "leftImg8bit" / split
        self.label_dir = self.root / "gtFine" / split
        if not self.image_dir.is_dir():
            raise UserError(f"{self.image_dir}: image folder not found")
        self.samples = self._list_samples()
        if require_labels:
            self.check_labels()

    def _list_samples(self) -> list[CityscapesSample]:
        samples, seen = [], {}
        for image_path in sorted(self.image_dir.glob(f"*/*{CITYSCAPES_IMAGE_SUFFIX}")):
            city = image_path.parent.name
            name = cityscapes_base_name(image_path)
            if name in seen:  # images, labels and bins are paired by this name
                raise UserError(f"{image_path}: image name {name} also found at {seen[name]}: one name in two "
                                "city folders would give one bin and one score for two images")
            seen[name] = image_path
            label_path = self.label_dir / city / f"{name}{CITYSCAPES_LABEL_SUFFIX}"
            samples.append(CityscapesSample(name, city, image_path, label_path))
        if not samples:
            raise UserError(f"{self.image_dir}: no <city>/*{CITYSCAPES_IMAGE_SUFFIX} images")
        return samples

    def check_labels(self) -> None:
        """Fail before any work when an image has no label file of the same name."""
        missing = [s for s in self.samples if not s.label_path.is_file()]
        if missing:
            raise UserError(f"{missing[0].label_path}: label missing for image {missing[0].image_path.name} "
                            f"({len(missing)} of {len(self.samples)} images have none)")

    def instance_path(self, sample: CityscapesSample) -> Path:
        return sample.label_path.with_name(f"{sample.name}{CITYSCAPES_INSTANCE_SUFFIX}")

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self):
        return iter(self.samples)

    def __getitem__(self, index: int) -> CityscapesSample:
        return self.samples[index]


def list_cityscapes_labels(gt_dir: str | Path) -> dict[str, Path]:
    """{base name: path} of every `*_gtFine_labelIds.png` below `gt_dir` (e.g. gtFine/val/),
    searched recursively as the postprocess scripts do. A name found twice is an error."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise UserError(f"{gt_dir}: label folder not found")
    labels: dict[str, Path] = {}
    for path in sorted(gt_dir.rglob(f"*{CITYSCAPES_LABEL_SUFFIX}")):
        name = cityscapes_base_name(path)
        if name in labels:
            raise UserError(f"{path}: label name {name} also found at {labels[name]}")
        labels[name] = path
    if not labels:
        raise UserError(f"{gt_dir}: no *{CITYSCAPES_LABEL_SUFFIX} files below this folder")
    return labels


def read_cityscapes_train_ids(path: str | Path) -> np.ndarray:
    """A `*_gtFine_labelIds.png` read as HW uint8 label ids and remapped to trainIds; an id
    outside 0..33 is an error naming the file (read_cityscapes_label can count them as void)."""
    return read_cityscapes_label(path)[0]


def read_cityscapes_label(path: str | Path, unknown_as_void: bool = False) -> tuple[np.ndarray, int]:
    """(trainIds, pixels whose label id is outside 0..33): those are an error unless
    `unknown_as_void` (the lookup then sends them to 255, ignored)."""
    path = Path(path)
    label_ids = read_palette_label(path)
    if label_ids.ndim != 2:
        raise UserError(f"{path}: label has shape {label_ids.shape}, expected a single-channel image")
    unknown = unknown_id_pixels(label_ids, CITYSCAPES_LABEL_SET, path, unknown_as_void)
    return cityscapes_label_ids_to_train_ids(label_ids), unknown
