"""Colour maps, overlays with a legend, banners and thumbnails (numpy + PIL + cv2, no torch).

Pictures are HxWx3 uint8 RGB arrays. A legend or a banner is added as a panel beside or above
the picture, never drawn over it, so every pixel of the image area still says what the class
map holds there (the tests read them back).
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from common.cli import UserError
from common.files.atomic import atomic_path
from common.viz.palettes import Palette
from common.data.images import read_class_map_png

PANEL_BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (0, 0, 0)
DEFAULT_ALPHA = 0.5


# ---- inputs ------------------------------------------------------------------------------------

def as_rgb(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 from a grey (HxW or HxWx1), RGB or RGBA (alpha dropped) uint8 image."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image dtype {image.dtype}, expected uint8")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return np.ascontiguousarray(image[:, :, :3])
    raise ValueError(f"image shape {image.shape}, expected HxW, HxWx1, HxWx3 or HxWx4")


def check_class_map(class_map: np.ndarray) -> np.ndarray:
    """The map as uint8 (ids 0..255 index a 256-entry palette); other shapes or ids are errors."""
    class_map = np.asarray(class_map)
    if class_map.ndim != 2:
        raise ValueError(f"class map shape {class_map.shape}, expected HxW")
    if class_map.dtype == np.uint8:
        return class_map
    if not np.issubdtype(class_map.dtype, np.integer):
        raise ValueError(f"class map dtype {class_map.dtype}, expected integers")
    if class_map.size and (class_map.min() < 0 or class_map.max() > 255):
        raise ValueError(f"class ids {class_map.min()}..{class_map.max()} outside 0..255")
    return class_map.astype(np.uint8)


def _colours(palette: Palette | np.ndarray) -> np.ndarray:
    colours = palette.colours if isinstance(palette, Palette) else np.asarray(palette, dtype=np.uint8)
    if colours.ndim != 2 or colours.shape[1] != 3 or len(colours) < 256:
        raise ValueError(f"palette shape {colours.shape}, expected (256, 3)")
    return colours


# ---- colour maps and overlays ------------------------------------------------------------------

def colourize(class_map: np.ndarray, palette: Palette | np.ndarray) -> np.ndarray:
    """Each pixel in its class's palette colour (ignore/void in the palette's own void colour)."""
    return _colours(palette)[check_class_map(class_map)]


def overlay(image_rgb: np.ndarray, class_map: np.ndarray, palette: Palette, alpha: float = DEFAULT_ALPHA,
            legend: bool = True, font_px: int | None = None) -> np.ndarray:
    """Class colours blended over the image (void pixels left as the image), with a legend of
    the classes present on a panel to the right when `legend`."""
    image = as_rgb(image_rgb)
    class_map = check_class_map(class_map)
    if image.shape[:2] != class_map.shape:
        raise ValueError(f"image is {image.shape[:2]}, class map {class_map.shape}: they must be the same size")
    painted = colourize(class_map, palette).astype(np.float32)
    blended = image.astype(np.float32) * (1 - alpha) + painted * alpha
    result = np.where((class_map == palette.ignore_index)[:, :, None], image,
                      np.floor(blended + 0.5).astype(np.uint8))
    if not legend:
        return result
    entries = [e._replace(name=f"{e.name} (not painted)") if e.class_id == palette.ignore_index else e
               for e in legend_entries(class_map, palette)]
    return with_legend(result, entries, font_px)


class LegendEntry(NamedTuple):
    class_id: int
    name: str
    colour: tuple[int, int, int]


def legend_entries(class_map: np.ndarray, palette: Palette) -> list[LegendEntry]:
    """The classes present in the map, by id, void last (when present)."""
    present = [int(v) for v in np.unique(check_class_map(class_map))]
    ordered = [v for v in present if v != palette.ignore_index] + \
              [v for v in present if v == palette.ignore_index]
    return [LegendEntry(v, palette.class_name(v), palette.colour(v)) for v in ordered]


# ---- text panels -------------------------------------------------------------------------------

@lru_cache(maxsize=16)
def font_of_size(font_px: int):
    """PIL's bundled font at `font_px` (Pillow >= 10.1): no font file on the machine needed."""
    return ImageFont.load_default(size=font_px)


def font_size_for(height: int) -> int:
    """A legend font readable beside a picture of this height: about 1/22 of it, 11 to 32 px."""
    return int(min(32, max(11, round(height / 22))))


def text_width(text: str, font) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(math.ceil(right - left))


def legend_panel(entries: Sequence[LegendEntry], height: int, font_px: int) -> np.ndarray:
    """Swatch + name per entry, in as many columns as needed to fit `height` (taller if the
    picture is too small for three rows)."""
    font = font_of_size(font_px)
    margin, swatch, line = max(3, font_px // 2), font_px, int(round(font_px * 1.4))
    rows = max(1, (height - 2 * margin) // line)
    rows = len(entries) if rows < 3 else min(rows, max(1, len(entries)))
    columns = max(1, math.ceil(len(entries) / rows))
    column_w = margin + swatch + margin + max([text_width(e.name, font) for e in entries] or [0])
    panel = Image.new("RGB", (margin + columns * column_w, max(height, 2 * margin + rows * line)),
                      PANEL_BACKGROUND)
    draw = ImageDraw.Draw(panel)
    for index, entry in enumerate(entries):
        x = margin + (index // rows) * column_w
        y = margin + (index % rows) * line
        draw.rectangle([x, y, x + swatch - 1, y + swatch - 1], fill=entry.colour, outline=TEXT_COLOUR)
        draw.text((x + swatch + margin, y + swatch // 2), entry.name, fill=TEXT_COLOUR, font=font, anchor="lm")
    return np.asarray(panel)


def with_legend(picture: np.ndarray, entries: Sequence[LegendEntry], font_px: int | None = None) -> np.ndarray:
    """The picture (top left, unchanged) with the legend panel to its right."""
    if not entries:
        return picture
    height, width = picture.shape[:2]
    panel = legend_panel(entries, height, font_px or font_size_for(height))
    canvas = np.full((max(height, panel.shape[0]), width + panel.shape[1], 3), PANEL_BACKGROUND, np.uint8)
    canvas[:height, :width] = picture
    canvas[:panel.shape[0], width:] = panel
    return canvas


def with_banner(picture: np.ndarray, text: str, font_px: int | None = None) -> np.ndarray:
    """A strip of text above the picture (the picture itself unchanged, below the strip)."""
    height, width = picture.shape[:2]
    font_px = font_px or font_size_for(max(height, 2 * width // 3))
    font = font_of_size(font_px)
    margin = max(3, font_px // 3)
    strip = Image.new("RGB", (max(width, text_width(text, font) + 2 * margin), font_px + 2 * margin),
                      PANEL_BACKGROUND)
    ImageDraw.Draw(strip).text((margin, margin + font_px // 2), text, fill=TEXT_COLOUR, font=font, anchor="lm")
    strip = np.asarray(strip)
    canvas = np.full((strip.shape[0] + height, max(width, strip.shape[1]), 3), PANEL_BACKGROUND, np.uint8)
    canvas[:strip.shape[0], :strip.shape[1]] = strip
    canvas[strip.shape[0]:, :width] = picture
    return canvas


# ---- thumbnails --------------------------------------------------------------------------------

def fit_hw(hw: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The size scaled so its long side is at most `max_side` (never enlarged), sides >= 1."""
    height, width = (int(v) for v in hw)
    return scale_hw((height, width), min(max_side, max(height, width)))


def scale_hw(hw: tuple[int, int], long_side: int) -> tuple[int, int]:
    """The size scaled (up or down) so its long side is `long_side`, sides >= 1."""
    height, width = (int(v) for v in hw)
    scale = long_side / max(height, width)
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def _interpolation(from_hw, to_hw) -> int:
    # area averaging to shrink; nearest to enlarge, so a small image's pixels stay sharp squares
    return cv2.INTER_AREA if to_hw[0] * to_hw[1] < from_hw[0] * from_hw[1] else cv2.INTER_NEAREST


def resize_image(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    image = as_rgb(image)
    if image.shape[:2] == tuple(hw):
        return image
    return cv2.resize(image, (hw[1], hw[0]), interpolation=_interpolation(image.shape[:2], hw))


def resize_class_map(class_map: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize: every pixel keeps a class id that is in the map."""
    class_map = check_class_map(class_map)
    if class_map.shape == tuple(hw):
        return class_map
    return cv2.resize(class_map, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)


def resize_mask(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Shrunk, a pixel is set when any pixel it covers is (one differing pixel stays visible);
    enlarged, nearest neighbour."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape == tuple(hw):
        return mask
    return cv2.resize(mask.astype(np.float32), (hw[1], hw[0]), interpolation=_interpolation(mask.shape, hw)) > 0


# ---- files -------------------------------------------------------------------------------------

def save_png(path: str | Path, picture: np.ndarray) -> None:
    """Lossless: a 2-D uint8 array is written as a grey (class id) PNG, HxWx3 as RGB. zlib level 6:
    level 9 (PIL's optimize) took 10 s instead of 0.8 s for a 1024x2048 disagreement map, for 15 % less."""
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.ascontiguousarray(picture)).save(tmp, format="PNG", compress_level=6)


def save_jpeg(path: str | Path, picture: np.ndarray, quality: int = 85) -> None:
    with atomic_path(path, suffix=".jpg") as tmp:
        Image.fromarray(np.ascontiguousarray(as_rgb(picture))).save(tmp, format="JPEG", quality=quality)


def save_encoded(path: str | Path, image: np.ndarray) -> None:
    """An image in OpenCV's channel order, encoded by OpenCV in the format of the file name's
    extension and written by Python: cv2.imwrite reports success on a full disk."""
    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix, np.ascontiguousarray(image))
    if not ok:
        raise UserError(f"{path}: OpenCV cannot encode a {image.dtype} {image.shape} image as {path.suffix}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


def read_class_png(path: str | Path) -> np.ndarray:
    """A class-id PNG written by save_png (grey) or a palette PNG, as HxW uint8 ids."""
    return read_class_map_png(path, "class map")
