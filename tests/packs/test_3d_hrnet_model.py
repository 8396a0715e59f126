"""3D_HRNet model.py: key-for-key strict loading of the published file format, shapes, OCR maths."""
from __future__ import annotations

import math

import pytest
import torch

from common.weights.checkpoint import read_checkpoint
from common.cli import UserError
from common.weights.manifest import load_manifest, manifest_shapes
from common.weights.demo import save_torch_checkpoint
from common.pipeline.packs import pack_module

model = pack_module("3D_HRNet", "model")


@pytest.fixture(scope="module")
def demo_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("hrnet") / "hrnet.pth"
    model.write_demo_checkpoint(path, seed=1)
    return path


@pytest.fixture(scope="module")
def network(demo_checkpoint):
    return model.load_pretrained(demo_checkpoint)


def test_module_keys_equal_the_manifest_in_order_and_shape():
    built = model.build_model()
    state = built.state_dict()
    manifest = manifest_shapes("3D_HRNet")
    assert list(state) == list(manifest)
    for name, tensor in state.items():
        assert (tuple(tensor.shape), str(tensor.dtype).replace("torch.", "")) == manifest[name], name
    params = sum(p.numel() for p in built.parameters())
    assert params == load_manifest("3D_HRNet")["num_parameters"]


def test_demo_checkpoint_has_the_published_layout(demo_checkpoint):
    container = read_checkpoint(demo_checkpoint)
    assert model.LOSS_KEY in container and container[model.LOSS_KEY].shape == (19,)
    network_keys = [k for k in container if k != model.LOSS_KEY]
    assert len(network_keys) == 1890 and all(k.startswith("model.") for k in network_keys)


def test_flat_checkpoint_loads_every_tensor(demo_checkpoint, network):
    container = read_checkpoint(demo_checkpoint)
    for name, tensor in network.state_dict().items():
        assert torch.equal(tensor, container["model." + name]), name
    assert not network.training


@pytest.mark.parametrize("wrap, loss_key", [(True, True), (False, False)])
def test_wrapped_or_loss_free_files_load_the_same_weights(tmp_path, network, wrap, loss_key):
    path = tmp_path / "variant.pth"
    model.write_demo_checkpoint(path, seed=1, wrap_state_dict=wrap, with_loss_key=loss_key)
    reference = network.state_dict()
    loaded = model.load_pretrained(path).state_dict()
    assert all(torch.equal(reference[k], loaded[k]) for k in reference)


def test_renamed_key_fails_naming_both_keys(tmp_path, demo_checkpoint):
    state = dict(read_checkpoint(demo_checkpoint))
    state["model.cls_head.weights"] = state.pop("model.cls_head.weight")
    path = tmp_path / "renamed.pth"
    save_torch_checkpoint(path, state)
    with pytest.raises(UserError) as caught:
        model.load_pretrained(path)
    message = str(caught.value)
    assert "cls_head.weight" in message and "cls_head.weights" in message and "\n" not in message


def test_wrong_shape_and_foreign_container_are_user_errors(tmp_path, demo_checkpoint):
    state = dict(read_checkpoint(demo_checkpoint))
    state["model.aux_head.3.bias"] = torch.zeros(21)
    save_torch_checkpoint(tmp_path / "shape.pth", state)
    with pytest.raises(UserError, match="aux_head.3.bias"):
        model.load_pretrained(tmp_path / "shape.pth")
    save_torch_checkpoint(tmp_path / "other.pth", {"epoch": 3, "optimizer": {}})
    with pytest.raises(UserError, match="no weights found"):
        model.load_pretrained(tmp_path / "other.pth")


def test_forward_returns_aux_then_ocr_logits_at_quarter_resolution(network):
    with torch.no_grad():
        aux, ocr = network(torch.randn(2, 3, 64, 96))
    assert aux.shape == ocr.shape == (2, 19, 16, 24)
    assert torch.isfinite(aux).all() and torch.isfinite(ocr).all()
    # the two heads are different computations (scored output is the OCR one)
    assert not torch.allclose(aux, ocr)


def test_batch_items_are_independent(network):
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        both = network(images)[1]
        single = network(images[1:])[1]
    torch.testing.assert_close(both[1:], single, rtol=1e-4, atol=1e-4)


def test_spatial_gather_is_a_per_class_softmax_over_pixels():
    feats = torch.randn(1, 5, 3, 4)
    logits = torch.randn(1, 2, 3, 4)
    context = model.SpatialGather()(feats, logits)
    assert context.shape == (1, 5, 2, 1)
    weights = torch.softmax(logits.flatten(2), dim=2)  # (1, K, HW)
    expected = torch.einsum("kp,cp->ck", weights[0], feats.flatten(2)[0])
    torch.testing.assert_close(context[0, :, :, 0], expected)


def test_object_attention_scales_by_inverse_sqrt_key_channels():
    block = model.ObjectAttentionBlock(8, 4).eval()
    # make every projection the identity-like ReLU of a fixed linear map, then recompute by hand
    feats, context = torch.randn(1, 8, 2, 3), torch.randn(1, 8, 3, 1)
    with torch.no_grad():
        out = block(feats, context)
        query = block.f_pixel(feats).flatten(2)[0].T  # (HW, 4)
        key = block.f_object(context).flatten(2)[0]  # (4, K)
        value = block.f_down(context).flatten(2)[0].T  # (K, 4)
        attention = torch.softmax(query @ key / math.sqrt(4), dim=-1)
        expected = block.f_up((attention @ value).T.reshape(1, 4, 2, 3))
    torch.testing.assert_close(out, expected)


def test_another_models_checkpoint_is_named_in_one_line(tmp_path):
    state = {name: torch.zeros(1) for name in manifest_shapes("RefineNet")}
    save_torch_checkpoint(tmp_path / "refinenet.pth", state)
    with pytest.raises(UserError, match="this is a RefineNet checkpoint"):
        model.load_pretrained(tmp_path / "refinenet.pth")
