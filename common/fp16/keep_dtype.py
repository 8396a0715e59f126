"""ATC `--keep_dtype` files: read, check against the model, write.

CANN's format: one entry per line, either an operator name of the original model or
`OpType::<Ascend IR type>` (e.g. `OpType::Conv2D` for every ONNX Conv). The files written
here hold node names only, the unambiguous form, and no comments (CANN's examples show none
inside the file). When reading, blank lines and lines starting with `#` are skipped.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import onnx

from common.cli import UserError
from common.fp16.modes import ASCEND_IR_TYPES, ascend_ir_types
from common.files.atomic import write_text_atomic

OP_TYPE_PREFIX = "OpType::"


@dataclass(frozen=True)
class KeepEntry:
    line_no: int
    text: str

    @property
    def op_type(self) -> str | None:
        return self.text[len(OP_TYPE_PREFIX):] if self.text.startswith(OP_TYPE_PREFIX) else None


def read_keep_entries(path: str | Path) -> list[KeepEntry]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: keep_dtype file not found")
    entries = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        text = line.strip()
        if text and not text.startswith("#"):
            entries.append(KeepEntry(line_no, text))
    return entries


def resolve_keep_dtype(path: str | Path, graph: onnx.GraphProto, model_name: str = "the model") -> set[str]:
    """The node names a keep_dtype file selects in `graph`; a line naming nothing is a UserError."""
    names = {node.name for node in graph.node if node.name}
    types_present = {node.op_type for node in graph.node}
    kept: set[str] = set()
    for entry in read_keep_entries(path):
        where = f"{path}:{entry.line_no}"
        if entry.op_type is not None:
            matched = {node.name for node in graph.node if entry.op_type in ascend_ir_types(node.op_type)}
            if not matched:
                raise UserError(f"{where}: {entry.text} names no operator type of {model_name}"
                                f"{_op_type_hint(entry.op_type, types_present)}")
            kept |= matched
        elif entry.text in names:
            kept.add(entry.text)
        else:
            close = difflib.get_close_matches(entry.text, sorted(names), n=1)
            hint = f" (closest: {close[0]})" if close else ""
            raise UserError(f"{where}: '{entry.text}' is not a node of {model_name}{hint}")
    return kept


def _op_type_hint(op_type: str, types_present: Iterable[str]) -> str:
    if op_type in ASCEND_IR_TYPES and op_type in types_present:
        wanted = " or ".join(f"{OP_TYPE_PREFIX}{t}" for t in ASCEND_IR_TYPES[op_type])
        return f": that is the ONNX name, ATC wants the Ascend IR type ({wanted})"
    known = sorted({t for onnx_type in types_present for t in ascend_ir_types(onnx_type)})
    return f" (its types: {', '.join(known)})"


def format_keep_dtype(node_names: Iterable[str]) -> str:
    return "".join(f"{name}\n" for name in node_names)


def write_keep_dtype(path: str | Path, node_names: Iterable[str]) -> None:
    """One node name per line, in the order given (callers pass graph order)."""
    write_text_atomic(path, format_keep_dtype(node_names))
