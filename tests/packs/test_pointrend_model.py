"""PointRend/model.py: checkpoint contract, MSRA layout, point sampling and selection semantics."""
from __future__ import annotations

import pickle

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from common.cli import UserError
from common.weights.manifest import manifest_shapes
from common.pipeline.packs import pack_module
from pointrend_shared import demo_checkpoint

torch.set_num_threads(2)
model = pack_module("PointRend", "model")


@pytest.fixture(scope="module")
def demo_pkl(tmp_path_factory):
    return demo_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def demo_raw(demo_pkl):
    with open(demo_pkl, "rb") as handle:
        return pickle.load(handle, encoding="latin1")


def _write_pickle(path, container):
    with open(path, "wb") as handle:
        pickle.dump(container, handle, protocol=2)
    return path


def test_state_dict_names_and_shapes_equal_the_manifest():
    state = model.build_model().state_dict()
    manifest = manifest_shapes("PointRend")
    assert list(sorted(state)) == list(sorted(manifest))
    assert all(tuple(state[name].shape) == shape for name, (shape, _) in manifest.items())


def test_demo_checkpoint_has_the_published_container(demo_raw):
    raw = demo_raw
    assert set(raw) == {"model", "__author__"}
    assert all(isinstance(v, np.ndarray) for v in raw["model"].values())
    assert len(raw["model"]) == 567


def test_strict_load_copies_every_tensor(demo_pkl, demo_raw):
    network = model.load_pretrained(demo_pkl)
    raw = demo_raw["model"]
    state = network.state_dict()
    for name in ("backbone.bottom_up.res4.22.conv3.norm.running_var",
                 "sem_seg_head.point_head.fc1.weight", "backbone.fpn_output2.bias"):
        np.testing.assert_array_equal(state[name].numpy(), raw[name])


def test_renamed_key_is_reported_by_name(demo_raw, tmp_path):
    tensors = dict(demo_raw["model"])
    tensors["sem_seg_head.point_head.fc9.weight"] = tensors.pop("sem_seg_head.point_head.fc2.weight")
    broken = _write_pickle(tmp_path / "renamed.pkl", {**demo_raw, "model": tensors})
    with pytest.raises(UserError) as err:
        model.load_pretrained(broken)
    message = str(err.value)
    assert "\n" not in message
    assert "sem_seg_head.point_head.fc2.weight" in message and "fc9.weight" in message


def test_pixel_stats_in_the_file_must_match_the_preprocessing(tmp_path):
    # An RGB-ordered mean (2020 detectron2 files store these buffers) is checked before loading.
    tensors = {"pixel_mean": np.array([123.675, 116.28, 103.53], np.float32).reshape(3, 1, 1),
               "pixel_std": np.ones((3, 1, 1), np.float32)}
    rgb_file = _write_pickle(tmp_path / "rgb.pkl", {"model": tensors, "__author__": "x"})
    with pytest.raises(UserError, match="pixel_mean"):
        model.load_pretrained(rgb_file)


def test_stride_is_on_the_first_1x1_conv():
    backbone = model.build_model().backbone
    body = backbone.bottom_up
    for stage in ("res3", "res4", "res5"):
        block = getattr(body, stage)[0]
        assert block.conv1.stride == (2, 2) and block.conv2.stride == (1, 1)
        assert block.shortcut.stride == (2, 2)
    assert body.res2[0].conv1.stride == (1, 1)
    features = backbone(torch.zeros(1, 3, 64, 128))
    assert [tuple(f.shape[2:]) for f in features] == [(16, 32), (8, 16), (4, 8), (2, 4)]


@pytest.mark.parametrize("step", [1, 2])
def test_gather_sampler_equals_grid_sample_with_zero_padding(step):
    generator = torch.Generator().manual_seed(step)
    features = torch.randn(2, 7, 6, 10, generator=generator)
    grid_h, grid_w = 6 * 2 ** step, 10 * 2 ** step
    # Every border cell plus random interior ones: the borders exercise the zero padding.
    border = [r * grid_w + c for r in range(grid_h) for c in range(grid_w)
              if r in (0, grid_h - 1) or c in (0, grid_w - 1)]
    flat = torch.tensor(border)[None].repeat(2, 1)
    flat = torch.cat([flat, torch.randint(0, grid_h * grid_w, (2, 40), generator=generator)], 1)
    rows, cols = flat // grid_w, flat % grid_w
    got = model.sample_points(model.flatten_for_sampling(features), (6, 10), rows, cols, 0.5 ** step)
    grid = torch.stack([(cols + 0.5) / grid_w, (rows + 0.5) / grid_h], dim=-1) * 2 - 1
    expected = F.grid_sample(features, grid.unsqueeze(2), mode="bilinear", padding_mode="zeros",
                             align_corners=False).squeeze(3)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def _reference_head(head, pyramid, num_points):
    """The subdivision as detectron2 writes it: grid_sample, topk, in-place scatter."""
    coarse = head.coarse_sem_seg_head(pyramid)
    logits = coarse
    for _ in range(head.subdivision_steps):
        logits = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)
        n, c, h, w = logits.shape
        top2 = torch.topk(logits, 2, dim=1).values
        uncertainty_map = (top2[:, 1] - top2[:, 0]).reshape(n, h * w)
        chosen = torch.topk(uncertainty_map, min(num_points, h * w), dim=1).indices
        coords = torch.stack([(chosen % w + 0.5) / w, (chosen // w + 0.5) / h], -1)
        grid = (2 * coords - 1).unsqueeze(2)
        fine = F.grid_sample(pyramid[0], grid, align_corners=False).squeeze(3)
        coarse_points = F.grid_sample(coarse, grid, align_corners=False).squeeze(3)
        point_logits = head.point_head(fine, coarse_points)
        logits = logits.reshape(n, c, h * w).scatter_(2, chosen.unsqueeze(1).expand(-1, c, -1),
                                                      point_logits).view(n, c, h, w)
    return logits


@pytest.mark.parametrize("num_points", [64, 10_000])  # fewer cells than the grid / all of them
def test_head_equals_a_grid_sample_reference(num_points):
    torch.manual_seed(0)
    head = model.PointRendHead(subdivision_num_points=num_points).eval()
    pyramid = [torch.randn(1, 256, 16 // 2 ** i, 32 // 2 ** i) for i in range(4)]
    with torch.no_grad():
        got, chosen = head(pyramid)
        expected = _reference_head(head, pyramid, num_points)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert [c.shape[1] for c in chosen] == [min(num_points, 32 * 64), min(num_points, 64 * 128)]


class _Selector(torch.nn.Module):
    def forward(self, uncertainty_map):
        return model.select_uncertain_cells(uncertainty_map, 300)


def test_tied_cells_are_selected_by_lowest_index_in_pytorch_and_onnx_runtime(tmp_path):
    # Five distinct values over 2 x 32 x 64 cells: the 300th largest sits inside a tie group.
    values = torch.randint(0, 5, (2, 32, 64), generator=torch.Generator().manual_seed(3)).float()
    path = tmp_path / "select.onnx"
    torch.onnx.export(_Selector(), (values,), str(path), opset_version=11, dynamo=False,
                      input_names=["u"], output_names=["chosen"])
    onnx_chosen = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"u": values.numpy()})[0]
    eager_chosen = _Selector()(values).numpy()
    np.testing.assert_array_equal(onnx_chosen, eager_chosen)
    flat = values.flatten(1).numpy()
    for row in range(2):
        order = sorted(range(flat.shape[1]), key=lambda i: (-flat[row, i], i))[:300]
        assert eager_chosen[row].tolist() == order


def test_input_size_must_be_a_multiple_of_32():
    with pytest.raises(UserError, match="multiples of 32"):
        model.build_model()(torch.zeros(1, 3, 48, 128))
    with pytest.raises(UserError, match="class_map_dtype"):
        model.build_model(class_map_dtype="float16")
