"""Wseg test helpers: the 552 MB demo checkpoint and its ONNX exports are written once per
pytest session (under the session's base temp folder) and shared by the Wseg test files, since
each write or export of WideResNet38 takes many seconds."""
from __future__ import annotations

from pathlib import Path

from common.pipeline.packs import pack_module

TEST_INPUT_SIDE = 64  # padded network input side used by the tests (the guide uses 1024)
DEMO_SEED = 0

model = pack_module("Wseg", "model")
export_script = pack_module("Wseg", "wseg_pth2onnx")
fix_script = pack_module("Wseg", "fix_softmax_transpose")


def shared_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.getbasetemp() / "wseg_shared"
    folder.mkdir(exist_ok=True)
    return folder


def demo_checkpoint(tmp_path_factory) -> Path:
    path = shared_dir(tmp_path_factory) / "model_enc_demo.pth"
    if not path.exists():
        model.write_demo_checkpoint(path, seed=DEMO_SEED)
    return path


def exported_onnx(tmp_path_factory, lean_mask: bool = False) -> Path:
    """wseg_pth2onnx.py output at the test input size (opset 11, unfixed)."""
    name = "wseg_lean.onnx" if lean_mask else "wseg.onnx"
    path = shared_dir(tmp_path_factory) / name
    if not path.exists():
        argv = [str(demo_checkpoint(tmp_path_factory)), str(path),
                "--input-size", str(TEST_INPUT_SIDE)] + (["--lean-mask"] if lean_mask else [])
        export_script.main(export_script.parse_args(argv))
    return path


def fixed_onnx(tmp_path_factory, lean_mask: bool = False, opset: int = 13) -> Path:
    """fix_softmax_transpose.py output of `exported_onnx`."""
    source = exported_onnx(tmp_path_factory, lean_mask)
    path = source.with_name(f"{source.stem}_fix{opset}.onnx")
    if not path.exists():
        fix_script.main(fix_script.parse_args([str(source), str(path), "--opset", str(opset)]))
    return path
