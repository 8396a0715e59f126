"""Summary rows as a Markdown table and a JSON file."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from common.files.atomic import write_json_atomic, write_text_atomic


SUMMARY_COLUMNS = ("pack", "backend", "images", "metric", "pytorch", "backend_value", "difference",
                   "parity_max_rel", "parity_class_mismatch", "throughput_img_s")


def summary_markdown(rows: Sequence[Mapping]) -> str:
    header = ("| pack | backend | images | metric | PyTorch | backend | difference | "
              "max rel. output diff | pixels of another class | backend img/s |")
    lines = [header, "|" + "---|" * len(SUMMARY_COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row.get(col)) for col in SUMMARY_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def format_cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"
    return str(value)


def write_summary(rows: Sequence[Mapping], json_path: str | Path, md_path: str | Path) -> None:
    write_json_atomic(json_path, {"packs": list(rows)})
    write_text_atomic(md_path, summary_markdown(rows))
