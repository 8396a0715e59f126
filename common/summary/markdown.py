"""Summary rows as a Markdown table and a JSON file."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from common.files.atomic import write_json_atomic, write_text_atomic
from common.files.folders import output_file_parent


# (row key, column title); a row of a pack that did not run holds only "pack" and "status".
SUMMARY_COLUMNS = (
    ("pack", "pack"), ("backend", "backend"), ("precision", "precision"), ("data", "data"),
    ("weights", "weights"), ("images", "images"), ("metric", "metric"), ("pytorch", "PyTorch"),
    ("backend_value", "backend"), ("difference", "difference"), ("parity_max_rel", "max rel. output diff"),
    ("parity_class_mismatch", "pixels of another class"), ("detections_matched", "detections matched"),
    ("throughput_img_s", "backend img/s"), ("verdict", "verdict"), ("fp16_prediction", "predicted ATC fp16 cost"),
)


def summary_markdown(rows: Sequence[Mapping]) -> str:
    lines = ["| " + " | ".join(title for _, title in SUMMARY_COLUMNS) + " |",
             "|" + "---|" * len(SUMMARY_COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(cell_value(row, key)) for key, _ in SUMMARY_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def cell_value(row: Mapping, key: str):
    if key == "detections_matched" and row.get("detections"):
        found = row["detections"]
        return f"{found['matched']} of {max(found['reference'], found['candidate'])}"
    if key == "verdict" and "verdict" not in row:
        return row.get("status")  # the pack did not run to the end
    return row.get(key)


def format_cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"
    return str(value)


def write_summary(rows: Sequence[Mapping], json_path: str | Path, md_path: str | Path) -> None:
    write_json_atomic(output_file_parent(json_path), {"packs": list(rows)})
    write_text_atomic(output_file_parent(md_path), summary_markdown(rows))
