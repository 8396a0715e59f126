"""Wseg model.py: strict key-for-key loading of the published format, PAMR constants, head maths."""
from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from common.weights.checkpoint import read_checkpoint
from common.cli import UserError
from common.weights.manifest import load_manifest, manifest_shapes
from common.weights.demo import save_torch_checkpoint
from wseg_shared import demo_checkpoint, model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return demo_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def network(checkpoint):
    return model.load_pretrained(checkpoint)


def test_module_keys_equal_the_manifest_in_order_shape_and_dtype():
    state = model._build_uninitialised().state_dict()
    manifest = manifest_shapes("Wseg")
    assert list(state) == list(manifest)
    for name, tensor in state.items():
        assert (tuple(tensor.shape), str(tensor.dtype).replace("torch.", "")) == manifest[name], name
    built = model._build_uninitialised()
    assert sum(p.numel() for p in built.parameters()) == load_manifest("Wseg")["num_parameters"]


def test_demo_checkpoint_is_a_bare_state_dict_with_the_true_pamr_kernels(checkpoint):
    container = read_checkpoint(checkpoint)
    assert isinstance(container, OrderedDict) and len(container) == 309
    assert not any(name.startswith("module.") for name in container)
    aff_x = container["_aff.aff_x.kernel"]
    aff_m = container["_aff.aff_m.kernel"]
    aff_std = container["_aff.aff_std.kernel"]
    # Every difference kernel: +1 at the centre, -1 at its own neighbour, zero elsewhere.
    assert torch.all(aff_x[:, 0, 1, 1] == 1) and torch.all(aff_x.flatten(1).sum(1) == 0)
    assert aff_x[0, 0, 0, 0] == -1 and aff_x[4, 0, 1, 2] == -1 and aff_x[7, 0, 2, 2] == -1
    assert torch.equal(aff_m, (aff_x < 0).float())
    assert torch.equal(aff_std.flatten(1), torch.eye(9))


def test_checkpoint_loads_key_for_key(checkpoint, network):
    container = read_checkpoint(checkpoint)
    loaded = network.state_dict()
    assert list(loaded) == list(container)
    for name, tensor in container.items():
        assert torch.equal(loaded[name], tensor), name
    assert not network.training
    assert not any(p.requires_grad for p in network.parameters())


def test_file_without_num_batches_tracked_loads(tmp_path, checkpoint, network):
    # torch < 0.4.1 wrote no num_batches_tracked; whether the published file has them is unknown.
    state = read_checkpoint(checkpoint)
    path = tmp_path / "old_torch.pth"
    save_torch_checkpoint(path, OrderedDict((k, v) for k, v in state.items()
                                            if not k.endswith("num_batches_tracked")))
    assert len(read_checkpoint(path)) == 309 - 50
    reference = network.state_dict()
    loaded = model.load_pretrained(path).state_dict()
    assert all(torch.equal(loaded[k], reference[k]) for k in reference if "num_batches" not in k)


def test_renamed_key_is_reported_by_name(tmp_path, checkpoint):
    state = read_checkpoint(checkpoint)
    renamed = OrderedDict((("b4_3.conv_branch2a.weight_x" if k == "b4_3.conv_branch2a.weight" else k), v)
                          for k, v in state.items())
    path = tmp_path / "renamed.pth"
    save_torch_checkpoint(path, renamed)
    with pytest.raises(UserError) as caught:
        model.load_pretrained(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert "b4_3.conv_branch2a.weight_x" in message and "b4_3.conv_branch2a.weight" in message


def test_forward_shapes_probabilities_and_lean_mask(network):
    image = torch.randn(2, 3, 40, 48, generator=torch.Generator().manual_seed(1))
    network.lean_mask = False
    with torch.no_grad():
        cls, mask = network(image)
        network.lean_mask = True
        cls_lean, mask_lean = network(image)
        network.lean_mask = False
    assert cls.shape == (2, 20) and mask.shape == (2, 21, 40, 48)
    assert mask_lean.shape == (2, 21, 10, 12)
    assert torch.allclose(mask.sum(1), torch.ones(2, 40, 48), atol=1e-5)
    assert torch.equal(cls, cls_lean)
    assert torch.allclose(model.upsample_mask(mask_lean, (40, 48)), mask, atol=1e-6)
    assert model.lean_mask_size(1024) == 256 and model.lean_mask_size(100) == 25


def test_class_scores_follow_the_ngwp_and_focal_formula():
    logits = torch.randn(1, 21, 3, 4, generator=torch.Generator().manual_seed(2))
    masks = F.softmax(logits, 1)
    scores = model.class_scores(logits, masks)
    for channel in (1, 7, 20):
        y, m = logits[0, channel].flatten(), masks[0, channel].flatten()
        mean_m = float(m.mean())
        expected = float((y * m).sum() / (1 + m.sum())) \
            + (1 - mean_m) ** 3 * math.log(0.01 + mean_m)
        assert scores[0, channel - 1].item() == pytest.approx(expected, rel=1e-5)


def test_background_channel_is_the_constant_logit(network):
    image = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = network.class_logits(image)
    assert logits.shape == (1, 21, 8, 8)
    assert torch.all(logits[:, 0] == model.BACKGROUND_LOGIT)
    assert logits[:, 1:].std() > 0.1  # demo classifier is calibrated to vary
