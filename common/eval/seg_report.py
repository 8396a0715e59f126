"""A segmentation metric as the user sees it: the per-class table printed, the JSON written."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from common.eval.confusion import ConfusionMatrix
from common.files.atomic import write_json_atomic


def report_segmentation(matrix: ConfusionMatrix, class_names: Sequence[str], save_path: str | Path,
                        extra: Mapping | None = None) -> dict:
    """Print the per-class table and write the metric JSON; returns the JSON dict."""
    result = matrix.to_dict(list(class_names))
    result.update(extra or {})
    print(matrix.table(list(class_names)))
    write_json_atomic(save_path, result)
    print(f"metrics written to {save_path}")
    return result
