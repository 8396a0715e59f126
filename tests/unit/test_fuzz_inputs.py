"""Hypothesis fuzzing of every reader that sees user files: random and truncated inputs give a
result or a one-line UserError, never a traceback (issue 7)."""
from __future__ import annotations

import io
import json
import pickle
import string
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from common.files.info import format_info_lines, parse_info
from common.files.bins import list_bins, natural_key, read_bin
from common.weights.checkpoint import read_checkpoint
from common.cli import UserError
from common.collect_summary import read_row
from common.files.atomic import is_temp_name
from common.files.json_files import lookup_number, read_json
from common.pipeline.packs import pack_module
from common.files.outputs import input_folder_of, match_outputs

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
stem_text = st.text(alphabet=string.ascii_letters + string.digits + "-", min_size=1, max_size=6)


def one_line(err: UserError) -> bool:
    return "\n" not in str(err) and bool(str(err))


# ---- bins -----------------------------------------------------------------------------------

@FUZZ
@given(data=st.binary(max_size=200), shape=st.lists(st.integers(0, 5), min_size=1, max_size=3),
       dtype=st.sampled_from(["float32", "float16", "int64", "uint8", "int32"]))
def test_bin_reader_returns_the_exact_shape_or_one_line(data, shape, dtype):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.bin"
        path.write_bytes(data)
        try:
            array = read_bin(path, shape, dtype)
        except UserError as err:
            assert one_line(err) and "x.bin" in str(err)
            assert len(data) != int(np.prod(shape)) * np.dtype(dtype).itemsize
            return
        assert array.shape == tuple(shape) and array.dtype == np.dtype(dtype)
        assert array.tobytes() == data


@FUZZ
@given(names=st.sets(st.text(alphabet=string.ascii_letters + string.digits + "._", min_size=1, max_size=14)
                     .filter(lambda n: n not in (".", "..")), max_size=12))
def test_list_bins_never_returns_hidden_or_temp_files(names):
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            (Path(folder) / name).write_bytes(b"")
        try:
            found = [p.name for p in list_bins(folder)]
        except UserError as err:
            assert one_line(err)
            assert not any(n.endswith((".bin", ".BIN")) and not n.startswith(".") for n in names)
            return
        assert all(not n.startswith(".") and not is_temp_name(n) and n.endswith((".bin", ".BIN")) for n in found)
        assert found == sorted(found, key=natural_key)
        assert set(found) == {n for n in names if n.endswith((".bin", ".BIN")) and not n.startswith(".")}


# ---- .info files ----------------------------------------------------------------------------

@FUZZ
@given(sizes=st.lists(st.tuples(st.integers(1, 5000), st.integers(1, 5000)), min_size=1, max_size=6),
       cut=st.floats(0, 1))
def test_info_parser_on_a_file_cut_anywhere(sizes, cut):
    text = format_info_lines([f"bins/img{i}.bin" for i in range(len(sizes))], sizes)
    full = [(i, f"bins/img{i}.bin", w, h) for i, (w, h) in enumerate(sizes)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.info"
        path.write_text(text[:int(len(text) * cut)])
        try:
            rows = parse_info(path)
        except UserError as err:
            assert one_line(err) and "d.info:" in str(err)
            return
    # A cut inside the last line may leave a shorter but well-formed number: all rows but the
    # last must be exactly the original ones.
    assert rows, "an empty list must be an error"
    assert rows[:-1] == full[:len(rows) - 1]
    assert rows[-1][:2] == full[len(rows) - 1][:2]


# ---- summary and metadata JSON -------------------------------------------------------------

def _summary_text(stems) -> str:
    files_info = {str(i): {"infiles": [f"/data/bins/{s}.bin"], "outfiles": [f"/r/{s}_0.bin"]}
                  for i, s in enumerate(stems)}
    return json.dumps({"filesinfo": files_info, "samples": len(stems), "throughput": 1.5})


@FUZZ
@given(value=json_values)
def test_input_folder_of_random_json_is_a_path_or_none(value):
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "r_summary.json").write_text(json.dumps(value))
        found = input_folder_of(Path(folder) / "r")
        assert found is None or isinstance(found, Path)


@FUZZ
@given(stems=st.lists(stem_text, min_size=1, max_size=4), cut=st.floats(0, 1), junk=st.binary(max_size=8))
def test_input_folder_of_a_truncated_summary(stems, cut, junk):
    text = _summary_text(stems).encode()
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "r_summary.json").write_bytes(text[:int(len(text) * cut)] + junk)
        found = input_folder_of(Path(folder) / "r")
        if cut == 1 and not junk:
            assert found == Path("/data/bins")
        else:
            assert found in (None, Path("/data/bins"))


@FUZZ
@given(content=st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=60)),
       key=st.sampled_from(["miou", "samples", "a.b", "throughput"]))
def test_pack_summary_json_reader_gives_a_number_or_one_line(content, key):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "metric.json"
        path.write_bytes(content)
        try:
            value = lookup_number(read_json(path), key, path)
        except UserError as err:
            assert one_line(err) and str(path) in str(err)
            return
        assert isinstance(value, float)


@FUZZ
@given(cut=st.floats(0, 1))
def test_pack_summary_reader_on_a_truncated_summary(cut):
    text = _summary_text(["a", "b"])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "s.json"
        path.write_text(text[:int(len(text) * cut)])
        try:
            assert lookup_number(read_json(path), "samples", path) == 2.0
        except UserError as err:
            assert one_line(err) and cut < 1


@FUZZ
@given(content=st.binary(max_size=80))
def test_collect_summary_row_reader_never_raises(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "summary_row.json"
        path.write_bytes(content)
        row = read_row(path)
        assert row is None or isinstance(row, dict)


postprocess_py = pack_module("RefineNet", "RefineNet_postprocess")


@FUZZ
@given(value=json_values)
def test_refinenet_metadata_reader_random_json(value):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "preprocess_meta.json"
        path.write_text(json.dumps(value))
        try:
            geometry, size = postprocess_py.load_geometry(path)
        except UserError as err:
            assert one_line(err) and str(path) in str(err)
            return
        assert isinstance(size, int) and size > 0 and isinstance(geometry, dict)


# ---- result-folder matching ----------------------------------------------------------------

@FUZZ
@given(stems=st.lists(stem_text, min_size=1, max_size=8, unique=True),
       present=st.sets(st.tuples(stem_text, st.integers(0, 2)), max_size=12),
       num_outputs=st.integers(1, 2), allow_missing=st.booleans(), allow_extra=st.booleans())
def test_match_outputs_random_folders(stems, present, num_outputs, allow_missing, allow_extra):
    with tempfile.TemporaryDirectory() as folder:
        for stem, k in present:
            (Path(folder) / f"{stem}_{k}.bin").write_bytes(b"\0")
        try:
            complete, missing = match_outputs(folder, stems, num_outputs, allow_missing, allow_extra)
        except UserError as err:
            assert one_line(err) and folder in str(err)
            return
    have = {f"{s}_{k}.bin" for s, k in present}
    # each list keeps the order of the sample list (complete ones need not all come first)
    assert complete == [s for s in stems if s in complete] and missing == [s for s in stems if s in missing]
    assert sorted(complete + missing) == sorted(stems)
    assert complete, "a metric over nothing must be refused"
    for stem in complete:
        assert all(f"{stem}_{k}.bin" in have for k in range(num_outputs))
    for stem in missing:
        assert not all(f"{stem}_{k}.bin" in have for k in range(num_outputs))
    assert allow_missing or not missing
    known = {f"{s}_{k}.bin" for s in stems for k in range(num_outputs)}
    assert allow_extra or have <= known


# ---- checkpoints -----------------------------------------------------------------------------

def _pickle_bytes() -> bytes:
    return pickle.dumps({"model": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, "__author__": "x"},
                        protocol=2)


def _torch_bytes(legacy: bool) -> bytes:
    buffer = io.BytesIO()
    torch.save({"model": {"w": torch.arange(6.0)}}, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


SOURCES = {"pkl": _pickle_bytes(), "zip": _torch_bytes(False), "legacy": _torch_bytes(True)}


@pytest.mark.filterwarnings("ignore")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(sorted(SOURCES)), cut=st.floats(0, 1),
       flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=3))
def test_damaged_checkpoints_give_one_line(source, cut, flips):
    data = bytearray(SOURCES[source][:max(1, int(len(SOURCES[source]) * cut))])
    for where, value in flips:
        data[min(len(data) - 1, int(len(data) * where))] = value
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("c.pkl" if source == "pkl" else "c.pth.tar")
        path.write_bytes(bytes(data))
        try:
            read_checkpoint(path)
        except UserError as err:
            assert one_line(err) and str(path) in str(err)


@FUZZ
@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=20))
def test_require_finite_refuses_exactly_nan_and_inf(values):
    from common.files.bins import require_finite
    array = np.asarray(values, dtype=np.float32)
    if np.isfinite(array).all():
        assert require_finite(array, "o_0.bin") is array
    else:
        with pytest.raises(UserError, match="o_0.bin: output holds NaN or Inf values"):
            require_finite(array, "o_0.bin")
