import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from common.files.bins import bin_stem, list_bins, natural_key, read_bin, write_bin
from common.files.info import parse_info, write_info
from common.cli import UserError


def test_bin_round_trip_keeps_values_and_dtype(tmp_path):
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7
    write_bin(tmp_path / "a.bin", array)
    assert (tmp_path / "a.bin").stat().st_size == array.nbytes
    np.testing.assert_array_equal(read_bin(tmp_path / "a.bin", (2, 3, 4)), array)
    write_bin(tmp_path / "b.bin", array.astype(np.int64), np.uint8)
    assert read_bin(tmp_path / "b.bin", (2, 3, 4), np.uint8).dtype == np.uint8


def test_wrong_size_names_file_size_and_expectation(tmp_path):
    (tmp_path / "cut.bin").write_bytes(b"\0" * 10)
    with pytest.raises(UserError) as err:
        read_bin(tmp_path / "cut.bin", (3, 2, 2))
    message = str(err.value)
    assert "cut.bin" in message and "10 bytes" in message and "48" in message
    assert "\n" not in message


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_bin(tmp_path / "nope.bin", (1,))


def test_list_bins_natural_order_and_skips_temp_files(tmp_path):
    for name in ("img10.bin", "img2.bin", "img1.bin", ".img3.bin.tmp.bin", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_bins(tmp_path)] == ["img1.bin", "img2.bin", "img10.bin"]
    assert natural_key("a10") > natural_key("a9")


def test_list_bins_empty_folder_fails(tmp_path):
    with pytest.raises(UserError, match="no .bin"):
        list_bins(tmp_path)


def test_bin_stem_cuts_at_first_dot():
    assert bin_stem("x/frankfurt_000000_000294_leftImg8bit.bin") == "frankfurt_000000_000294_leftImg8bit"
    assert bin_stem("a.b.bin") == "a"


def test_info_round_trip(tmp_path):
    write_info(tmp_path / "d.info", ["p/a.bin", "p/b.bin"], [(500, 500), (640, 480)])
    assert parse_info(tmp_path / "d.info") == [(0, "p/a.bin", 500, 500), (1, "p/b.bin", 640, 480)]


@pytest.mark.parametrize("line", ["0 a.bin 500", "x a.bin 1 1", "0 a.bin -1 5", "0 a b c d"])
def test_info_bad_line_names_line_number(tmp_path, line):
    (tmp_path / "bad.info").write_text("0 ok.bin 1 1\n" + line + "\n")
    with pytest.raises(UserError, match=r"bad.info:2"):
        parse_info(tmp_path / "bad.info")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_info_parser_never_crashes_on_random_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "f.info"
    path.write_bytes(data)
    try:
        rows = parse_info(path)
    except UserError:
        return
    assert all(len(row) == 4 and row[2] > 0 and row[3] > 0 for row in rows)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=200))
def test_bin_reader_accepts_only_the_exact_size(tmp_path_factory, size):
    path = tmp_path_factory.mktemp("fuzzbin") / "x.bin"
    path.write_bytes(b"\1" * size)
    if size == 4 * 3 * 4:
        assert read_bin(path, (3, 4)).shape == (3, 4)
    else:
        with pytest.raises(UserError):
            read_bin(path, (3, 4))
