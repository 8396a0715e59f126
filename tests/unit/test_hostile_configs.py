"""Issue 14, configs and flags: a bad value in a YAML config or an export flag is one line
naming the file (or flag) and the key, exit code 2, before any checkpoint is read (so it is
never reported as a checkpoint problem), and nothing in the output folder changes.

The export scripts run in-process through common.cli.run_script; the checkpoint they are given
does not exist, so a config that passed would end in 'checkpoint file not found' instead.
"""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.cli import UserError
from common.files.config_reader import Setting, check_flag, read_config, read_config_chain
from common.pipeline.packs import pack_module
from helpers import snapshot, expect_one_line, run_cli

pkl2onnx = pack_module("PointRend", "PointRend_pkl2onnx")
wseg2onnx = pack_module("Wseg", "wseg_pth2onnx")
hrnet2onnx = pack_module("3D_HRNet", "HRNet_pth2onnx")
mmdet2onnx = pack_module("MaskRCNN_mmdet", "mmdet_pth2onnx")


def expect_refused(module, argv, out_dir, capsys, *fragments) -> str:
    before = snapshot(out_dir)
    code, lines = run_cli(module, *argv, capsys=capsys)
    line = expect_one_line(code, lines, *fragments)
    assert "checkpoint" not in line, line  # the config is to blame, not the weights
    assert snapshot(out_dir) == before
    return line


# ---- PointRend: detectron2 config with a _BASE_ chain -----------------------------------------

POINTREND_CASES = {  # id: (yaml text, fragment after "error: <config>: ")
    "steps not a number": ("MODEL:\n  POINT_HEAD:\n    SUBDIVISION_STEPS: abc\n",
                           "MODEL.POINT_HEAD.SUBDIVISION_STEPS is 'abc', expected an integer >= 1"),
    "steps zero": ("MODEL:\n  POINT_HEAD:\n    SUBDIVISION_STEPS: 0\n",
                   "MODEL.POINT_HEAD.SUBDIVISION_STEPS is 0, expected an integer >= 1"),
    "steps a fraction": ("MODEL:\n  POINT_HEAD:\n    SUBDIVISION_STEPS: 2.5\n",
                         "MODEL.POINT_HEAD.SUBDIVISION_STEPS is 2.5, expected an integer >= 1"),
    "steps a boolean": ("MODEL:\n  POINT_HEAD:\n    SUBDIVISION_STEPS: true\n",
                        "MODEL.POINT_HEAD.SUBDIVISION_STEPS is True, expected an integer >= 1"),
    "steps another count": ("MODEL:\n  POINT_HEAD:\n    SUBDIVISION_STEPS: 3\n",
                            "MODEL.POINT_HEAD.SUBDIVISION_STEPS is 3; this network implements 2 only (the "
                            "coarse logits are at 1/4 of the input and each step doubles them)"),
    "no classes": ("MODEL:\n  SEM_SEG_HEAD:\n    NUM_CLASSES: 0\n",
                   "MODEL.SEM_SEG_HEAD.NUM_CLASSES is 0, expected an integer >= 1"),
    "other classes": ("MODEL:\n  POINT_HEAD:\n    NUM_CLASSES: 8\n",
                      "MODEL.POINT_HEAD.NUM_CLASSES is 8; this network implements 19 only"),
    "negative points": ("MODEL:\n  POINT_HEAD:\n    SUBDIVISION_NUM_POINTS: -5\n",
                        "MODEL.POINT_HEAD.SUBDIVISION_NUM_POINTS is -5, expected an integer >= 1"),
    "test size not a multiple of 32": ("INPUT:\n  MIN_SIZE_TEST: 1000\n",
                                       "INPUT.MIN_SIZE_TEST is 1000, expected an integer >= 32, a multiple of 32"),
    "pixel mean of 2 values": ("MODEL:\n  PIXEL_MEAN: [1, 2]\n",
                               "MODEL.PIXEL_MEAN is [1, 2], expected a list of 3 numbers"),
    "pixel mean text": ("MODEL:\n  PIXEL_MEAN: abc\n", "MODEL.PIXEL_MEAN is 'abc', expected a list of 3 numbers"),
    "pixel mean other values": ("MODEL:\n  PIXEL_MEAN: [103.53, 116.28, 0]\n",
                                "MODEL.PIXEL_MEAN is [103.53, 116.28, 0]; this network implements "
                                "[103.53, 116.28, 123.675] only"),
    "RGB input": ("INPUT:\n  FORMAT: RGB\n", "INPUT.FORMAT is 'RGB'; this network implements 'BGR' only"),
    "stride flag as text": ("MODEL:\n  RESNETS:\n    STRIDE_IN_1X1: 'yes'\n",
                            "MODEL.RESNETS.STRIDE_IN_1X1 is 'yes', expected true or false"),
    "other depth": ("MODEL:\n  RESNETS:\n    DEPTH: 50\n", "MODEL.RESNETS.DEPTH is 50; this network implements 101 only"),
    "section a number": ("MODEL: 5\n", "MODEL is 5, expected a section (a mapping of settings)"),
    "section a list": ("MODEL:\n  POINT_HEAD: [1, 2]\n",
                       "MODEL.POINT_HEAD is [1, 2], expected a section (a mapping of settings)"),
    "top level a list": ("- MODEL\n- INPUT\n", "expected a mapping of config sections at the top level, found a list"),
    "not YAML": ("MODEL:\n  POINT_HEAD: [1, 2\n", "not valid YAML at line 3 (ParserError)"),
    "base not a file name": ("_BASE_: 5\n", "_BASE_ is 5, expected a file name"),
    "base that is itself": ("_BASE_: config.yaml\n", "_BASE_ config.yaml leads back to config.yaml (a loop)"),
}


@pytest.mark.parametrize("case", list(POINTREND_CASES))
def test_pointrend_config_value_is_one_line(case, tmp_path, out_dir, capsys):
    text, fragment = POINTREND_CASES[case]
    config = tmp_path / "config.yaml"
    config.write_text(text, encoding="utf-8")
    argv = [config, tmp_path / "absent.pkl", out_dir / "model.onnx", "--input-size", 64, 128]
    expect_refused(pkl2onnx, argv, out_dir, capsys, f"error: {config}: {fragment}")


def test_pointrend_bad_value_in_a_base_names_the_base_file(tmp_path, out_dir, capsys):
    base = tmp_path / "Base-PointRend-Semantic-FPN.yaml"
    base.write_text("MODEL:\n  POINT_HEAD:\n    SUBDIVISION_NUM_POINTS: many\n", encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text("_BASE_: Base-PointRend-Semantic-FPN.yaml\nMODEL:\n  RESNETS:\n    DEPTH: 101\n")
    argv = [config, tmp_path / "absent.pkl", out_dir / "model.onnx"]
    expect_refused(pkl2onnx, argv, out_dir, capsys,
                   f"error: {base}: MODEL.POINT_HEAD.SUBDIVISION_NUM_POINTS is 'many', expected an integer >= 1")


def test_pointrend_config_that_is_not_text(tmp_path, out_dir, capsys):
    config = tmp_path / "config.yaml"
    config.write_bytes(b"MODEL:\n  \xff\xfe\x00binary\n")
    argv = [config, tmp_path / "absent.pkl", out_dir / "model.onnx"]
    expect_refused(pkl2onnx, argv, out_dir, capsys, f"error: {config}: not a text file (not UTF-8)")


def test_pointrend_valid_config_reaches_the_checkpoint(tmp_path, out_dir, capsys):
    """The control: every value right, so the next problem is the (absent) checkpoint."""
    config = tmp_path / "config.yaml"
    config.write_text("_BASE_: not-checked-out.yaml\nMODEL:\n  POINT_HEAD:\n    SUBDIVISION_STEPS: 2\n"
                      "    SUBDIVISION_NUM_POINTS: 4096\n  PIXEL_MEAN: [103.530, 116.280, 123.675]\n"
                      "INPUT:\n  MIN_SIZE_TEST: 1024\n", encoding="utf-8")
    values, chain = pkl2onnx.read_config(config)
    assert values["MODEL.POINT_HEAD.SUBDIVISION_NUM_POINTS"] == 4096 and chain == [config]
    code, lines = run_cli(pkl2onnx, config, tmp_path / "absent.pkl", out_dir / "model.onnx", capsys=capsys)
    expect_one_line(code, lines, f"error: {tmp_path / 'absent.pkl'}: checkpoint file not found")


# ---- Wseg: upstream voc_resnet38.yaml ------------------------------------------------------

WSEG_CASES = {
    "pad size a number": ("TEST:\n  PAD_SIZE: 1024\n",
                          "TEST.PAD_SIZE is 1024, expected a list of 2 integers >= 8, a multiple of 8"),
    "pad size text": ("TEST:\n  PAD_SIZE: [abc, abc]\n",
                      "TEST.PAD_SIZE is ['abc', 'abc'], expected a list of 2 integers >= 8, a multiple of 8"),
    "pad size not a multiple of 8": ("TEST:\n  PAD_SIZE: [1020, 1020]\n",
                                     "TEST.PAD_SIZE is [1020, 1020], expected a list of 2 integers"),
    "pad size not square": ("TEST:\n  PAD_SIZE: [1024, 512]\n", "TEST.PAD_SIZE [1024, 512] is not square"),
    "NET a number": ("NET: 5\n", "NET is 5, expected a section (a mapping of settings)"),
    "TEST a list": ("TEST: []\n", "TEST is [], expected a section (a mapping of settings)"),
    "psi text": ("NET:\n  SG_PSI: abc\n", "NET.SG_PSI is 'abc', expected a number"),
    "psi other value": ("NET:\n  SG_PSI: 0.5\n", "NET.SG_PSI is 0.5; this network implements 0.3 only"),
    "other backbone": ("NET:\n  BACKBONE: resnet50\n", "NET.BACKBONE is 'resnet50'; this network implements "
                       "'resnet38' only"),
    "focal p NaN": ("NET:\n  FOCAL_P: .nan\n", "NET.FOCAL_P is nan, expected a number"),
}


@pytest.mark.parametrize("case", list(WSEG_CASES))
def test_wseg_config_value_is_one_line(case, tmp_path, out_dir, capsys):
    text, fragment = WSEG_CASES[case]
    config = tmp_path / "voc_resnet38.yaml"
    config.write_text(text, encoding="utf-8")
    argv = [config, tmp_path / "absent.pth", out_dir / "model.onnx"]
    expect_refused(wseg2onnx, argv, out_dir, capsys, f"error: {config}: {fragment}")


def test_wseg_config_file_missing_is_a_warning_as_in_pointrend(tmp_path, out_dir, capsys):
    """The guide's command names ./wseg/configs/voc_resnet38.yaml of an upstream clone: without
    one, the built-in values are used and said so; the run goes on to the checkpoint."""
    config = tmp_path / "voc_resnet38.yaml"
    argv = [config, tmp_path / "absent.pth", out_dir / "model.onnx"]
    code, lines = run_cli(wseg2onnx, *argv, capsys=capsys)
    assert code == 2 and len(lines) == 2, lines
    assert lines[0] == (f"[WARNING] {config}: config file not found (no 1-stage-wseg clone here); using the "
                        "values this pack builds in, the published config's")
    assert "absent.pth" in lines[1] and lines[1].startswith("error: ")


# ---- flags ------------------------------------------------------------------------------------

@pytest.mark.parametrize("opset", [99, 21, 10, 0])
def test_mmdet_opset_outside_what_the_exporter_writes(opset, tmp_path, out_dir, capsys):
    argv = [tmp_path / "absent.pth", "--output-file", out_dir / "model.onnx", "--opset", opset]
    expect_refused(mmdet2onnx, argv, out_dir, capsys,
                   f"error: --opset {opset}: expected an opset from 11 to 20 (this graph needs opset >= 11; "
                   "torch ", "TorchScript exporter writes 7 to 20)")


@pytest.mark.parametrize("module, argv", [
    (hrnet2onnx, lambda t, o: ["--pth", t / "absent.pth", "--save_path", o, "--static-batch", 0]),
    (pkl2onnx, lambda t, o: [t / "absent.pkl", o, "--static-batch", -1]),
], ids=["3D_HRNet", "PointRend"])
def test_static_batch_below_one(module, argv, tmp_path, out_dir, capsys):
    args = argv(tmp_path, out_dir / "model.onnx")
    value = args[-1]
    expect_refused(module, args, out_dir, capsys, f"error: --static-batch {value}: expected an integer >= 1")


# ---- the reader itself, on any value ----------------------------------------------------------

yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10 ** 6, 10 ** 6) | st.floats(allow_nan=True)
    | st.text(alphabet="abc019 .-", max_size=6),
    lambda children: st.lists(children, max_size=3), max_leaves=6)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=yaml_values, kind=st.sampled_from(["int", "float", "bool", "str"]),
       length=st.sampled_from([None, 2]))
def test_any_value_is_accepted_as_it_is_or_named_in_one_line(value, kind, length, tmp_path):
    import yaml

    setting = Setting("A.B", kind, minimum=1 if kind in ("int", "float") else None, length=length)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"A": {"B": value}}), encoding="utf-8")
    try:
        found = read_config(config, [setting])["A.B"]
    except UserError as err:
        message = str(err)
        assert message.startswith(f"{config}: A.B is ") and "\n" not in message, message
        assert message.endswith(setting.describe()), message
        return
    items = list(found) if length else [found]
    originals = list(value) if length else [value]
    assert len(items) == len(originals)
    for item, original in zip(items, originals):
        assert item == original and not (isinstance(item, float) and math.isnan(item))
        assert kind != "int" or (type(original) is int and original >= 1)


def test_chain_and_flag_helpers_name_what_they_check(tmp_path):
    (tmp_path / "a.yaml").write_text("_BASE_: b.yaml\nX: 2\n")
    (tmp_path / "b.yaml").write_text("_BASE_: a.yaml\n")
    with pytest.raises(UserError, match=r"b.yaml: _BASE_ a.yaml leads back to a.yaml \(a loop\)"):
        read_config_chain(tmp_path / "a.yaml", [Setting("X", "int")])
    assert check_flag("--size", 64, minimum=8) == 64
    with pytest.raises(UserError, match=r"^--input-hw 64 7: expected an integer >= 32$"):
        check_flag("--input-hw", [64, 7], minimum=32)
