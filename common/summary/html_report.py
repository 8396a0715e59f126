"""results/report.html: the summary table and, per pack, a few thumbnails of what it predicted.

Read from a run_all results folder: `summary.json` (the rows of common.collect_summary) and
each pack's work folder `<results>/<pack>/`:

    show/<run>/          --show-dir folders of the segmentation postprocesses (pytorch, onnxruntime,
                         any other run such as onnxruntime_nearest)
    det_<run>/show/      MaskRCNN_mmdet's --ifShowDetObj drawings

Per segmentation pack the page shows, for the images where PyTorch and the backend disagree
most (else the first ones): the input, the backend's prediction with a legend, and the
disagreement map with its count at the scored resolution. Thumbnails are small files under
`report_files/` beside the page, referenced by relative paths; the page has no script and no
external resource, so it opens from disk without a network.
"""
from __future__ import annotations

import html
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence
from urllib.parse import quote

import numpy as np

from common.cli import UserError
from common.data.images import read_image_rgb
from common.files.atomic import write_text_atomic
from common.files.folders import output_file_parent
from common.files.json_files import read_json
from common.summary.markdown import SUMMARY_COLUMNS, cell_value, format_cell
from common.viz.disagreement import ShowPair, compare_pair, count_text, draw_disagreement, pair_show_dirs
from common.viz.draw import (colourize, legend_entries, resize_class_map, resize_image, resize_mask, save_jpeg,
                             save_png, scale_hw, with_legend)
from common.viz.show import ShowRecord, list_show_records

REPORT_NAME = "report.html"
FILES_DIR = "report_files"
THUMB_SIDE = 320  # long side of a thumbnail, pixels
THUMB_FONT_PX = 11
JPEG_QUALITY = 80
IMAGES_PER_PACK = 2
REFERENCE_RUN = "pytorch"
DEMO_NOTE = ("Demo weights (random values in the original checkpoint format) predict noise: these "
             "pictures show that every step runs and where two backends differ, not what the model can do.")
DEMO_MARK = " <strong>(random values: the predictions are noise)</strong>"
UNKNOWN_WEIGHTS_NOTE = ("The summary does not say which weights were used. Without --weights-dir, "
                        "run_all.sh uses demo weights, which predict noise.")


# ---- what goes on the page ---------------------------------------------------------------------

@dataclass
class Thumbnail:
    path: Path  # under report_files/
    caption: str


@dataclass
class ImageRow:
    stem: str
    thumbnails: list[Thumbnail]


@dataclass
class PackSection:
    pack: str
    row: Mapping
    notes: list[str] = field(default_factory=list)
    images: list[ImageRow] = field(default_factory=list)


def weights_are_demo(row: Mapping) -> bool | None:
    """True / False from the row's `weights` entry, None when the row does not say."""
    weights = row.get("weights")
    if weights is None:
        return None
    return str(weights).startswith("demo")


# ---- thumbnails --------------------------------------------------------------------------------

class ThumbnailWriter:
    """Writes the thumbnails of one pack under report_files/<pack>/, numbered in page order."""

    def __init__(self, files_dir: Path, pack: str):
        self.folder = files_dir / pack
        self.count = 0

    def _path(self, kind: str, ext: str) -> Path:
        self.count += 1
        return self.folder / f"{self.count:03d}_{kind}.{ext}"

    def jpeg(self, picture: np.ndarray, kind: str, caption: str) -> Thumbnail:
        path = self._path(kind, "jpg")
        save_jpeg(path, picture, quality=JPEG_QUALITY)
        return Thumbnail(path, caption)

    def png(self, picture: np.ndarray, kind: str, caption: str) -> Thumbnail:
        path = self._path(kind, "png")
        save_png(path, picture)
        return Thumbnail(path, caption)


def prediction_thumbnail(class_map: np.ndarray, record: ShowRecord, hw) -> np.ndarray:
    """The colour map at thumbnail size, with the legend of the classes of the full-size map."""
    colours = colourize(resize_class_map(class_map, hw), record.palette)
    return with_legend(colours, legend_entries(class_map, record.palette), THUMB_FONT_PX)


class Compared(NamedTuple):
    count: int  # pixels of another class, at the scored resolution
    total: int
    pair: ShowPair


def compare_all(pairs: Sequence[ShowPair]) -> list[Compared]:
    """Every pair counted (masks not kept: a real split has hundreds of megapixels), the most
    differing first, then in name order."""
    compared = []
    for pair in pairs:
        _, mask = compare_pair(pair)
        compared.append(Compared(int(mask.sum()), int(mask.size), pair))
    return sorted(compared, key=lambda c: -c.count)


def totals(compared: Sequence[Compared]) -> str:
    return count_text(sum(c.count for c in compared), sum(c.total for c in compared))


def disagreement_thumbnail(writer: ThumbnailWriter, item: Compared, small_image: np.ndarray, caption: str):
    _, mask = compare_pair(item.pair)
    small_mask = resize_mask(mask, small_image.shape[:2])
    picture = draw_disagreement(small_image, small_mask, item.count, item.total, font_px=THUMB_FONT_PX)
    return writer.png(picture, "disagreement", caption)


def segmentation_row(writer: ThumbnailWriter, item: Compared, reference: str, backend: str) -> ImageRow:
    """Input, the backend's prediction with its legend, and where it differs from the reference."""
    record = item.pair.candidate
    class_map = record.class_map()
    small_image = resize_image(record.image(class_map.shape), scale_hw(class_map.shape, THUMB_SIDE))
    return ImageRow(item.pair.stem, [
        writer.jpeg(small_image, "input", "input"),
        writer.png(prediction_thumbnail(class_map, record, small_image.shape[:2]), "prediction",
                   f"{backend} prediction"),
        disagreement_thumbnail(writer, item, small_image, f"{reference} vs {backend}: pixels of another class")])


def prediction_rows(writer: ThumbnailWriter, records: Mapping[str, ShowRecord], run: str) -> list[ImageRow]:
    rows = []
    for stem, record in list(records.items())[:IMAGES_PER_PACK]:
        class_map = record.class_map()
        small_image = resize_image(record.image(class_map.shape), scale_hw(class_map.shape, THUMB_SIDE))
        rows.append(ImageRow(stem, [
            writer.jpeg(small_image, "input", "input"),
            writer.png(prediction_thumbnail(class_map, record, small_image.shape[:2]), "prediction",
                       f"{run} prediction")]))
    return rows


def add_segmentation(section: PackSection, writer: ThumbnailWriter, show_root: Path, backend: str) -> None:
    runs = {p.name: p for p in sorted(show_root.iterdir()) if p.is_dir()} if show_root.is_dir() else {}
    if backend not in runs:
        return
    if REFERENCE_RUN not in runs:
        section.notes.append(f"No PyTorch pictures ({show_root / REFERENCE_RUN} missing): predictions only.")
        section.images = prediction_rows(writer, list_show_records(runs[backend]), backend)
        return
    pairs, only_reference, only_backend = pair_show_dirs(runs[REFERENCE_RUN], runs[backend])
    if only_reference or only_backend:
        section.notes.append(f"{len(only_reference) + len(only_backend)} image(s) have pictures of one run only.")
    compared = compare_all(pairs)
    if not compared:
        return
    section.notes.append(f"{REFERENCE_RUN} vs {backend} over {len(compared)} images, at the resolution the "
                         f"postprocess scores: {totals(compared)}.")
    section.images = [segmentation_row(writer, item, REFERENCE_RUN, backend) for item in compared[:IMAGES_PER_PACK]]
    for other in (name for name in runs if name not in (REFERENCE_RUN, backend)):
        # another run of the same pack (3D_HRNet's Resize edit): its worst image against the backend
        other_compared = compare_all(pair_show_dirs(runs[backend], runs[other])[0])
        if other_compared:
            worst = other_compared[0]
            class_map = worst.pair.reference.class_map()
            small_image = resize_image(worst.pair.reference.image(class_map.shape),
                                       scale_hw(class_map.shape, THUMB_SIDE))
            section.notes.append(f"{backend} vs {other} over {len(other_compared)} images: {totals(other_compared)}.")
            section.images.append(ImageRow(worst.pair.stem, [disagreement_thumbnail(
                writer, worst, small_image, f"{backend} vs {other}: pixels of another class")]))


def detection_caption(drawing: Path, run: str) -> str:
    """`<run> detections: N listed (best score s)` from the postprocess's `<stem>.txt` beside the
    drawings (`<name> <score> x1 y1 x2 y2` lines): the drawing shows only those above its threshold."""
    listed = drawing.parent.parent / f"{drawing.stem}.txt"
    if not listed.is_file():
        return f"{run} detections"
    scores = []
    for line in listed.read_text(encoding="utf-8").splitlines():
        try:
            scores.append(float(line.split()[1]))
        except (IndexError, ValueError):
            continue
    best = f", best score {max(scores):.2f}" if scores else ""
    return f"{run} detections: {len(scores)} listed in {listed.name}{best}; drawn: those above the drawing threshold"


def add_detections(section: PackSection, writer: ThumbnailWriter, work: Path, backend: str) -> None:
    """MaskRCNN_mmdet's drawings (det_<run>/show/*.jpg), the backend's and PyTorch's side by side."""
    drawings = {run: sorted(p for p in (work / f"det_{run}" / "show").glob("*.jpg") if not p.name.startswith("."))
                for run in (backend, REFERENCE_RUN)}
    for index, path in enumerate(drawings[backend][:IMAGES_PER_PACK]):
        thumbnails = []
        for run in (backend, REFERENCE_RUN):
            match = [p for p in drawings[run] if p.name == path.name]
            if match:
                image = read_image_rgb(match[0])
                thumbnails.append(writer.jpeg(resize_image(image, scale_hw(image.shape[:2], THUMB_SIDE)),
                                              "detections", detection_caption(match[0], run)))
        section.images.append(ImageRow(path.stem, thumbnails))
    if drawings[backend] and not drawings[REFERENCE_RUN]:
        section.notes.append("Detections of the backend only (the PyTorch run drew none).")


def pack_section(results: Path, files_dir: Path, row: Mapping) -> PackSection:
    pack = str(row.get("pack", "?"))
    section = PackSection(pack, row)
    work = results / pack
    if work.is_dir():
        backend = str(row.get("backend", "onnxruntime"))
        writer = ThumbnailWriter(files_dir, pack)
        add_segmentation(section, writer, work / "show", backend)
        if not section.images:
            add_detections(section, writer, work, backend)
    if not section.images:
        section.notes.append("No pictures from this pack's run.")
    return section


# ---- the page ----------------------------------------------------------------------------------

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; background: #fff; }
table.summary { border-collapse: collapse; font-size: 0.85em; }
table.summary th, table.summary td { border: 1px solid #bbb; padding: 0.25em 0.5em; text-align: left; }
table.summary th { background: #eee; }
.agree { background: #d8f0d8; }
.differs { background: #f6d5d0; }
.note { background: #fff4cc; border: 1px solid #e0c060; padding: 0.5em 0.8em; max-width: 60em; }
figure { display: inline-block; margin: 0 0.6em 0.6em 0; vertical-align: top; }
figcaption { font-size: 0.8em; color: #555; }
h3 { font-size: 0.95em; margin: 0.8em 0 0.3em; }
img { border: 1px solid #ccc; }
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def verdict_class(verdict) -> str:
    text = str(verdict or "")
    return "agree" if text == "agree" else "differs" if text.startswith("differs") else ""


def table_html(rows: Sequence[Mapping]) -> str:
    present = [(key, head) for key, head in SUMMARY_COLUMNS
               if key in ("pack", "verdict") or any(cell_value(row, key) is not None for row in rows)]
    lines = ["<table class=\"summary\">", "<tr>" + "".join(f"<th>{esc(h)}</th>" for _, h in present) + "</tr>"]
    for row in rows:
        cells = []
        for key, _ in present:
            css = verdict_class(row.get(key)) if key == "verdict" else ""
            attr = f" class=\"{css}\"" if css else ""
            cells.append(f"<td{attr}>{esc(format_cell(cell_value(row, key)))}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(lines + ["</table>"])


def image_src(path: Path, page_dir: Path) -> str:
    return quote(path.relative_to(page_dir).as_posix())


def section_html(section: PackSection, page_dir: Path) -> str:
    row = section.row
    facts = [f"{key}: {esc(row[key])}" + (DEMO_MARK if key == "weights" and weights_are_demo(row) else "")
             for key in ("data", "weights", "verdict") if key in row]
    parts = [f"<h2 id=\"{esc(section.pack)}\">{esc(section.pack)}</h2>"]
    if facts:
        parts.append(f"<p>{'; '.join(facts)}</p>")
    parts += [f"<p>{esc(note)}</p>" for note in section.notes]
    for image_row in section.images:
        parts.append(f"<h3>{esc(image_row.stem)}</h3><div>")
        for thumb in image_row.thumbnails:
            parts.append(f"<figure><img src=\"{image_src(thumb.path, page_dir)}\" alt=\"{esc(thumb.caption)}\">"
                         f"<figcaption>{esc(thumb.caption)}</figcaption></figure>")
        parts.append("</div>")
    return "\n".join(parts)


def page_html(rows: Sequence[Mapping], sections: Sequence[PackSection], page_dir: Path, files_bytes: int,
              files_count: int) -> str:
    demo = [weights_are_demo(row) for row in rows]
    notes = []
    if any(demo):
        notes.append(DEMO_NOTE)
    elif any(value is None for value in demo):
        notes.append(UNKNOWN_WEIGHTS_NOTE)
    body = ["<h1>segzoo: run_all results</h1>",
            *(f"<p class=\"note\">{esc(note)}</p>" for note in notes),
            table_html(rows), *(section_html(section, page_dir) for section in sections),
            f"<p><small>{files_count} pictures, {files_bytes / 1024:.0f} KiB in {FILES_DIR}/.</small></p>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<title>segzoo results</title>\n<style>" + STYLE + "</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def read_rows(results: Path) -> list[dict]:
    rows = read_json(results / "summary.json").get("packs")
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise UserError(f"{results / 'summary.json'}: 'packs' is not a list of rows")
    return rows


@dataclass
class ReportSize:
    page: Path
    page_bytes: int
    files_bytes: int
    files_count: int

    @property
    def total_bytes(self) -> int:
        return self.page_bytes + self.files_bytes


def build_report(results: str | Path) -> ReportSize:
    """Write <results>/report.html and <results>/report_files/ (replaced as a whole)."""
    results = Path(results)
    rows = read_rows(results)
    files_dir = results / FILES_DIR
    if files_dir.exists():  # this builder owns the folder: pictures of an earlier run go
        shutil.rmtree(files_dir)
    sections = [pack_section(results, files_dir, row) for row in rows]
    files = [p for p in files_dir.rglob("*") if p.is_file()] if files_dir.is_dir() else []
    files_bytes = sum(p.stat().st_size for p in files)
    page = output_file_parent(results / REPORT_NAME)
    write_text_atomic(page, page_html(rows, sections, results, files_bytes, len(files)))
    return ReportSize(page, page.stat().st_size, files_bytes, len(files))
