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
# tests/test_datasets_cityscapes.py checks the mapping against the upstream HRNet table and,
# when `cityscapesscripts` happens to be installed, against that package.

from dataclasses import dataclass  # noqa: E402  (section-local import keeps the file appendable)

import cv2  # noqa: E402


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
        samples = []
        for image_path in sorted(self.image_dir.glob(f"*/*{CITYSCAPES_IMAGE_SUFFIX}")):
            city = image_path.parent.name
            name = cityscapes_base_name(image_path)
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


def read_image_bgr(path: str | Path) -> np.ndarray:
    """HWC uint8 BGR through OpenCV's IMREAD_COLOR (the decoder of the HRNet/detectron2 code)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: image not found")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{path}: unreadable image")
    return image


def read_cityscapes_train_ids(path: str | Path) -> np.ndarray:
    """A `*_gtFine_labelIds.png` read as HW uint8 label ids and remapped to trainIds."""
    path = Path(path)
    label_ids = read_palette_label(path)
    if label_ids.ndim != 2:
        raise UserError(f"{path}: label has shape {label_ids.shape}, expected a single-channel image")
    return cityscapes_label_ids_to_train_ids(label_ids)


# ---- COCO 2017 instances ---------------------------------------------------------------------

# mmdet CocoDataset.CLASSES: label i (0..79) is the i-th name, and COCO_CATEGORY_IDS[i] its
# category id in instances_*.json (ascending ids; 12, 26, 29, 30, 45, 66, 68, 69, 71, 83 unused).
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
COCO_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
    22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
    67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)
COCO_CATEGORY_TO_LABEL = {cat_id: label for label, cat_id in enumerate(COCO_CATEGORY_IDS)}


def coco_label_to_category_id(label: int) -> int:
    """Contiguous label 0..79 -> COCO category id (a label outside the range is a UserError)."""
    if not 0 <= int(label) < len(COCO_CATEGORY_IDS):
        raise UserError(f"COCO label {label} outside 0..{len(COCO_CATEGORY_IDS) - 1}")
    return COCO_CATEGORY_IDS[int(label)]


def coco_category_id_to_label(category_id: int) -> int:
    if int(category_id) not in COCO_CATEGORY_TO_LABEL:
        raise UserError(f"COCO category id {category_id} is not one of the 80 detection categories")
    return COCO_CATEGORY_TO_LABEL[int(category_id)]


class CocoInstances:
    """`<coco_root>/val2017/*.jpg` + `<coco_root>/annotations/instances_val2017.json`.

    Image ids keep the annotation file's order (mmdet's `img_ids`); images are found by the
    json's `file_name`, and `id_by_stem` maps a file stem (the bin names) back to its id.
    Either folder can also be given explicitly (`image_dir`, `annotation_json`).
    """

    def __init__(self, coco_root: str | Path | None = None, split: str = "val2017", *,
                 image_dir: str | Path | None = None, annotation_json: str | Path | None = None):
        root = Path(coco_root) if coco_root is not None else None
        if root is None and annotation_json is None:
            raise UserError("COCO: give the dataset root or the annotation json")
        self.image_dir = Path(image_dir) if image_dir is not None else (root / split if root else None)
        self.annotation_json = (Path(annotation_json) if annotation_json is not None
                                else root / "annotations" / f"instances_{split}.json")
        self.coco = load_coco_json(self.annotation_json)
        self.image_ids = list(self.coco.getImgIds())
        self.id_by_stem = {Path(self.coco.imgs[i]["file_name"]).stem: i for i in self.image_ids}

    def image_path(self, image_id: int) -> Path:
        return self.image_dir / self.coco.imgs[image_id]["file_name"]

    def image_size_wh(self, image_id: int) -> tuple[int, int]:
        info = self.coco.imgs[image_id]
        return int(info["width"]), int(info["height"])

    def check_files(self) -> None:
        if self.image_dir is None or not self.image_dir.is_dir():
            raise UserError(f"{self.image_dir}: COCO image folder not found")
        missing = [i for i in self.image_ids if not self.image_path(i).is_file()]
        if missing:
            raise UserError(f"{self.image_path(missing[0])}: image missing "
                            f"({len(missing)} of {len(self.image_ids)} images of {self.annotation_json})")

    def __len__(self) -> int:
        return len(self.image_ids)


def load_coco_json(path: str | Path):
    """pycocotools COCO object of an instances json, quietly; a bad file is a UserError."""
    import contextlib
    import io
    import json

    from pycocotools.coco import COCO

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: COCO annotation json not found")
    try:
        dataset = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset, dict) or key not in dataset:
            raise UserError(f"{path}: not a COCO instances file (no '{key}' list)")
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco
