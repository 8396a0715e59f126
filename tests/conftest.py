"""Shared fixtures (synthetic datasets) and the test session's settings; helpers are in helpers.py."""
from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent

# A test run started as a background job of a non-interactive shell inherits SIGINT ignored, and
# would pass that on to every command it starts, whose Ctrl-C handling the tests then cannot see.
# Python's own handler here puts children back on the default disposition a terminal gives them.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Two cores on CI: one intra-op thread per framework keeps PyTorch and ONNX Runtime from
# oversubscribing when pytest and a subprocess both compute.
torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))


@pytest.fixture(scope="session")
def synthetic_voc(tmp_path_factory) -> Path:
    """A VOCdevkit parent folder with 4 small images (long sides 500 and not 500)."""
    from common.data.synth.voc import write_synthetic_voc
    root = tmp_path_factory.mktemp("voc")
    write_synthetic_voc(root, count=4, seed=3, sizes_hw=((60, 80), (80, 45), (64, 64), (30, 100)))
    return root


@pytest.fixture
def voc(tmp_path, synthetic_voc) -> Path:
    """A private copy of the 4-image synthetic VOC (tests break it on purpose)."""
    shutil.copytree(synthetic_voc, tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture
def out_dir(tmp_path) -> Path:
    """The output folder of a previous run: one ONNX file that a refused run must leave untouched."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "previous.onnx").write_bytes(b"an earlier export")
    return folder
