import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from common.weights.checkpoint import extract_state_dict, load_checkpoint_into, load_strict, read_checkpoint
from common.cli import UserError
from common.weights.demo import save_numpy_pickle, save_torch_checkpoint


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)


def tiny_state(prefix=""):
    return OrderedDict((prefix + k, v.clone()) for k, v in Tiny().state_dict().items())


def test_torch_container_with_module_prefix_loads_strictly(tmp_path):
    state = tiny_state("module.")
    save_torch_checkpoint(tmp_path / "c.pth.tar", {"model": state, "epoch": 3, "best_val": [np.float64(0.7)]})
    model = load_checkpoint_into(Tiny(), tmp_path / "c.pth.tar", sub_keys=("model",))
    torch.testing.assert_close(model.conv.weight, state["module.conv.weight"])


def test_half_precision_tensors_become_float32(tmp_path):
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in tiny_state().items()}
    save_torch_checkpoint(tmp_path / "h.pth", state)
    loaded = extract_state_dict(read_checkpoint(tmp_path / "h.pth"), "h.pth")
    assert loaded["conv.weight"].dtype == torch.float32
    assert loaded["bn.num_batches_tracked"].dtype == torch.int64


def test_numpy_pickle_loads(tmp_path):
    state = {k: v.numpy() for k, v in tiny_state().items()}
    save_numpy_pickle(tmp_path / "m.pkl", {"model": state, "__author__": "someone"})
    model = load_checkpoint_into(Tiny(), tmp_path / "m.pkl", sub_keys=("model",))
    np.testing.assert_array_equal(model.bn.running_var.numpy(), state["bn.running_var"])


def test_mismatch_report_lists_missing_unexpected_and_wrong_shape(tmp_path):
    state = tiny_state()
    state["conv.weightX"] = state.pop("conv.weight")
    state["bn.bias"] = torch.zeros(5)
    with pytest.raises(UserError) as err:
        load_strict(Tiny(), state, "file.pth")
    message = str(err.value)
    assert "1 missing (conv.weight)" in message
    assert "1 unexpected (conv.weightX)" in message
    assert "1 wrong shape (bn.bias [5] vs [4])" in message
    assert "\n" not in message


def test_tolerated_missing_buffer(tmp_path):
    state = tiny_state()
    del state["bn.num_batches_tracked"]
    load_strict(Tiny(), state, "f", tolerated_missing_suffixes=("num_batches_tracked",))
    with pytest.raises(UserError, match="num_batches_tracked"):
        load_strict(Tiny(), state, "f")


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": {"w": np.zeros(2)}, "x": RunsCode()}, protocol=2))
    with pytest.raises(UserError, match="refused.*posix.system|refused.*os.system"):
        read_checkpoint(path)


def test_torch_file_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": tiny_state(), "payload": RunsCode()}, path)
    with pytest.raises(UserError, match="refused"):
        read_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(UserError, match="junk.pth"):
        read_checkpoint(tmp_path / "junk.pth")
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        read_checkpoint(tmp_path / "empty.pkl")
    with pytest.raises(UserError, match="not found"):
        read_checkpoint(tmp_path / "absent.pth")


def test_no_weights_found_names_the_keys(tmp_path):
    save_torch_checkpoint(tmp_path / "w.pth", {"epoch": 1, "optim": {}})
    with pytest.raises(UserError, match="no weights found"):
        extract_state_dict(read_checkpoint(tmp_path / "w.pth"), "w.pth", sub_keys=("model",))


def test_another_models_checkpoint_is_named_in_one_short_line(tmp_path):
    from common.weights.checkpoint import identify_model
    from common.weights.manifest import manifest_shapes
    wseg_names = list(manifest_shapes("Wseg"))
    assert identify_model(wseg_names) == "Wseg"
    assert identify_model(["module." + n for n in wseg_names]) == "Wseg"
    assert identify_model(["model." + n for n in manifest_shapes("3D_HRNet")]) == "3D_HRNet"
    assert identify_model(wseg_names[: len(wseg_names) // 2]) is None  # too few names to tell
    assert identify_model(tiny_state()) is None
    foreign = {name: torch.zeros(1) for name in wseg_names}
    with pytest.raises(UserError) as err:
        load_strict(Tiny(), foreign, "res38.pth")
    assert str(err.value) == ("res38.pth: this is a Wseg checkpoint (by its tensor names), not a Tiny one: "
                              "only 0 of 7 Tiny tensors found by name")


def test_legacy_torch_file_is_read_and_a_legacy_payload_refused(tmp_path):
    torch.save({"model": tiny_state()}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    model = load_checkpoint_into(Tiny(), tmp_path / "old.pth", sub_keys=("model",))
    assert model.bn.running_var.shape == (4,)
    torch.save({"model": tiny_state(), "p": RunsCode()}, tmp_path / "bad.pkl", _use_new_zipfile_serialization=False)
    with pytest.raises(UserError, match="refused to load: unpickling it would call posix.system"):
        read_checkpoint(tmp_path / "bad.pkl")  # legacy torch content under a .pkl name: still torch
