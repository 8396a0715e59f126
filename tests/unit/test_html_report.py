"""results/report.html from a results folder laid out as run_all leaves it (show folders written
by common.viz.show on synthetic VOC and Cityscapes images, MaskRCNN drawings): valid, local-only
references to files that exist, the disagreement counts of the pictures, the demo-weights note,
light; and rendered in headless Chromium, where the screenshot is not blank and every image loads."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from common import cli, html_report
from common.data.cityscapes import CITYSCAPES_IMAGE_SUFFIX
from common.summary.html_report import DEMO_NOTE, FILES_DIR, THUMB_SIDE, UNKNOWN_WEIGHTS_NOTE, build_report
from common.data.synth.cityscapes import write_synthetic_cityscapes
from common.data.synth.voc import write_synthetic_voc
from common.viz.palettes import CITYSCAPES, VOC
from common.viz.show import write_show_pictures

ODD_STEM = "2007_000001.v2 & copy"  # dots, a space and an HTML special character
VOC_DIFFERING = 3  # pixels where the onnxruntime map differs from PyTorch's on the odd stem
PAGE_LIMIT_BYTES = 2_000_000


def blob_map(rng, hw, class_ids) -> np.ndarray:
    """A few rectangles of the given classes on background 0."""
    class_map = np.zeros(hw, np.uint8)
    for class_id in class_ids:
        top, left = rng.integers(0, hw[0] // 2), rng.integers(0, hw[1] // 2)
        class_map[top:top + hw[0] // 2, left:left + hw[1] // 2] = class_id
    return class_map


def make_segmentation_pack(work: Path, images: dict[str, Path], palette, class_ids, differing: dict[str, int],
                           extra_run: str | None = None) -> None:
    rng = np.random.default_rng(0)
    for stem, image_path in images.items():
        with Image.open(image_path) as image:
            hw = (image.height, image.width)
        reference = blob_map(rng, hw, class_ids)
        candidate = reference.copy()
        flat = candidate.reshape(-1)  # a view: changes go into candidate
        flat[:differing.get(stem, 0)] = (flat[:differing.get(stem, 0)] + 1) % len(palette.class_names)
        write_show_pictures(work / "show" / "pytorch", stem, reference, palette, image_path)
        write_show_pictures(work / "show" / "onnxruntime", stem, candidate, palette, image_path)
        if extra_run:
            write_show_pictures(work / "show" / extra_run, stem, reference, palette, image_path)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    results = root / "results"
    voc = write_synthetic_voc(root / "voc", count=2, seed=1, sizes_hw=((375, 500), (61, 47)))
    grey = voc / "JPEGImages" / "2007_000001.jpg"
    Image.open(grey).convert("L").save(grey)
    make_segmentation_pack(results / "RefineNet",
                           {"2007_000000": voc / "JPEGImages" / "2007_000000.jpg", ODD_STEM: grey},
                           VOC, (1, 15), {ODD_STEM: VOC_DIFFERING})
    cs = write_synthetic_cityscapes(root / "cs", count=2, size_hw=(256, 512), seed=2)
    cs_images = {p.name[:-len(CITYSCAPES_IMAGE_SUFFIX)]: p for p in sorted(cs.rglob(f"*{CITYSCAPES_IMAGE_SUFFIX}"))}
    make_segmentation_pack(results / "3D_HRNet", cs_images, CITYSCAPES, (0, 2, 10, 13), {},
                           extra_run="onnxruntime_nearest")
    rng = np.random.default_rng(3)
    for run in ("onnxruntime", "pytorch"):
        for index in range(2):
            drawing = results / "MaskRCNN_mmdet" / f"det_{run}" / "show" / f"{index:012d}.jpg"
            drawing.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)).save(drawing)
            (drawing.parent.parent / f"{drawing.stem}.txt").write_text(
                "hot_dog 0.138337 5.40 78.90 70.12 96.00\nparking_meter 0.901576 15.72 73.07 83.02 96.00\n")
    rows = [
        {"pack": "RefineNet", "backend": "onnxruntime", "images": 2, "metric": "mIoU", "pytorch": 0.5,
         "backend_value": 0.5, "status": "ok", "data": "synthetic", "weights": "demo", "verdict": "agree"},
        {"pack": "3D_HRNet", "backend": "onnxruntime", "status": "ok", "data": "synthetic", "weights": "demo",
         "verdict": "differs: mIoU by 0.01 (tolerance 1e-6)"},
        {"pack": "MaskRCNN_mmdet", "backend": "onnxruntime", "status": "ok"},  # no verdict/data/weights keys
        {"pack": "Wseg", "status": "failed, see results/Wseg.log"},
    ]
    (results / "summary.json").write_text(json.dumps({"packs": rows}))
    assert cli.run_script(html_report.main, html_report.parse_args, [str(results)]) == 0
    return results


class PageParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.refs, self.images, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        for key in ("src", "href"):
            if attrs.get(key) is not None:
                self.refs.append(attrs[key])
        if tag == "img":
            self.images.append(attrs)

    def handle_data(self, data):
        self.text.append(data)


def parse_page(results: Path) -> PageParser:
    parser = PageParser()
    parser.feed((results / "report.html").read_text(encoding="utf-8"))
    parser.close()
    return parser


def test_page_references_only_local_files_that_exist_and_all_of_them(results):
    page = parse_page(results)
    assert not {"script", "link", "iframe", "object"} & set(page.tags)  # nothing fetched or run
    assert page.refs and all("://" not in ref and not ref.startswith(("/", "data:")) for ref in page.refs)
    referenced = {(results / unquote(ref)).resolve() for ref in page.refs}
    assert all(path.is_file() for path in referenced)
    written = {p.resolve() for p in (results / FILES_DIR).rglob("*") if p.is_file()}
    assert referenced == written  # no orphan pictures either
    assert all(image.get("alt") for image in page.images)


def test_page_has_the_table_verdicts_and_a_section_per_pack(results):
    text = (results / "report.html").read_text(encoding="utf-8")
    assert '<td class="agree">agree</td>' in text
    assert '<td class="differs">differs: mIoU by 0.01 (tolerance 1e-6)</td>' in text
    for pack in ("RefineNet", "3D_HRNet", "MaskRCNN_mmdet", "Wseg"):
        assert f'<h2 id="{pack}">' in text
    assert "2007_000001.v2 &amp; copy" in text  # the odd stem, escaped
    assert DEMO_NOTE in text
    assert "onnxruntime detections: 2 listed in 000000000000.txt, best score 0.90" in text


def test_page_states_the_disagreement_counts_of_the_pictures(results):
    text = " ".join(parse_page(results).text)
    total = 375 * 500 + 61 * 47
    assert f"pytorch vs onnxruntime over 2 images, at the resolution the postprocess scores: " \
           f"{VOC_DIFFERING} of {total:,} pixels of another class" in text
    assert f"pytorch vs onnxruntime over 2 images, at the resolution the postprocess scores: " \
           f"no pixel of another class (of {2 * 256 * 512:,})" in text
    assert "onnxruntime vs onnxruntime_nearest over 2 images" in text


def test_the_image_that_differs_is_shown_first_with_red_pixels(results):
    files = sorted((results / FILES_DIR / "RefineNet").iterdir())
    assert [p.name.split("_", 1)[1] for p in files[:3]] == ["input.jpg", "prediction.png", "disagreement.png"]
    with Image.open(files[2]) as picture:
        pixels = np.asarray(picture.convert("RGB"))
    assert np.all(pixels == (255, 0, 0), axis=2).sum() >= 1  # the 3 pixels, still visible
    page = (results / "report.html").read_text(encoding="utf-8")
    assert page.index("2007_000001.v2 &amp; copy") < page.index("<h3>2007_000000</h3>")


def test_thumbnails_are_small_and_the_page_light(results):
    files = [p for p in (results / FILES_DIR).rglob("*") if p.is_file()]
    for path in files:
        with Image.open(path) as image:
            assert min(image.size) <= THUMB_SIDE, path  # legend or banner may widen or heighten one side
    total = sum(p.stat().st_size for p in files) + (results / "report.html").stat().st_size
    assert total < PAGE_LIMIT_BYTES / 2  # three packs of five here


def test_demo_note_follows_the_weights_the_rows_name(results, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    summary = json.loads((copy / "summary.json").read_text())
    for row in summary["packs"]:
        row["weights"] = "/data/weights/RefineNet_910.pth.tar"
    (copy / "summary.json").write_text(json.dumps(summary))
    build_report(copy)
    text = (copy / "report.html").read_text(encoding="utf-8")
    assert DEMO_NOTE not in text and UNKNOWN_WEIGHTS_NOTE not in text
    for row in summary["packs"]:
        row.pop("weights")
    (copy / "summary.json").write_text(json.dumps(summary))
    build_report(copy)
    assert UNKNOWN_WEIGHTS_NOTE in (copy / "report.html").read_text(encoding="utf-8")


def test_a_rebuild_replaces_the_pictures_of_the_last_one(results, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    stale = copy / FILES_DIR / "Old" / "001_input.jpg"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")
    build_report(copy)
    assert not stale.exists()


def test_a_results_folder_without_summary_is_one_line(tmp_path, capsys):
    code = cli.run_script(html_report.main, html_report.parse_args, [str(tmp_path)])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "summary.json: not found" in lines[0]


# ---- seen the way a person sees it: headless Chromium ------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
IMAGE_PROBE = """<script>
window.addEventListener("load", function () {
  var widths = Array.prototype.map.call(document.images, function (i) { return i.naturalWidth; });
  document.body.setAttribute("data-image-widths", JSON.stringify(widths));
});
</script>"""


def chromium(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   f"--user-data-dir={profile}", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, HOME=profile))
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium; .ci/run does)")
def test_chromium_renders_the_page_with_every_image_loaded(results, tmp_path):
    # the probe goes into a copy beside the page (same relative paths); the report has no script
    probe = results / "report_probe.html"
    probe.write_text((results / "report.html").read_text(encoding="utf-8")
                     .replace("</body>", IMAGE_PROBE + "</body>"), encoding="utf-8")
    try:
        dom = chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    assert "data-image-widths=" in dom.stdout, dom.stderr[-2000:]
    widths = json.loads(dom.stdout.split('data-image-widths="', 1)[1].split('"', 1)[0].replace("&quot;", '"'))
    assert len(widths) == len(parse_page(results).images) > 0
    assert all(width > 0 for width in widths), widths

    screenshot = tmp_path / "report.png"
    shot = chromium(f"--screenshot={screenshot}", "--window-size=1200,1600", "--virtual-time-budget=10000",
                    (results / "report.html").as_uri())
    assert screenshot.is_file(), shot.stderr[-2000:]
    with Image.open(screenshot) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[:2] == (1600, 1200)
    assert pixels.std() > 20  # not a blank page
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500  # photos and colour maps, not just text
    person = np.all(pixels == VOC.colour(15), axis=2).sum()  # RefineNet's prediction thumbnail, near the top
    assert person > 500, person
