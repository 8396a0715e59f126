"""PointRend/model.py: checkpoint contract, MSRA layout, point sampling and selection semantics."""
from __future__ import annotations

import pickle
from fractions import Fraction

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from common.weights.checkpoint import read_checkpoint
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

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
    return read_checkpoint(demo_pkl)  # the project's restricted unpickler, as for real files


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


# ---- the Gather sampler is grid_sample, bit for bit -------------------------------------------

def _bits(values: torch.Tensor) -> np.ndarray:
    return values.detach().contiguous().numpy().view(np.int32)


def _grid_sample_points(features, grid_x, grid_y):
    grid = torch.stack([grid_x, grid_y], dim=-1).unsqueeze(2)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=False).squeeze(3)


def _random_points(generator, count: int, height: int, width: int):
    """grid_sample coordinates that exercise every path: anywhere in and around the map, exactly
    on the borders (+-1), on input pixel centres and a hair off them (weights near 0 and 1)."""
    uniform = lambda: torch.rand(count, generator=generator) * 2.6 - 1.3  # noqa: E731
    grid_x, grid_y = uniform(), uniform()
    kind = torch.randint(0, 4, (count,), generator=generator)
    border = torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0)
    grid_x = torch.where(kind == 1, border, grid_x)
    pixel_x = torch.randint(-1, width + 1, (count,), generator=generator).float()
    pixel_y = torch.randint(-1, height + 1, (count,), generator=generator).float()
    centre_x, centre_y = (2 * pixel_x + 1) / width - 1, (2 * pixel_y + 1) / height - 1
    grid_x = torch.where(kind >= 2, centre_x, grid_x)
    grid_y = torch.where(kind >= 2, centre_y, grid_y)
    hair = torch.randn(count, generator=generator) * 1e-6
    return torch.where(kind == 3, grid_x + hair, grid_x), torch.where(kind == 3, grid_y - hair, grid_y)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), height=st.integers(1, 23), width=st.integers(1, 29),
       channels=st.integers(1, 9), batch=st.integers(1, 2))
def test_gather_sampler_equals_grid_sample_bit_for_bit(seed, height, width, channels, batch):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, channels, height, width, generator=generator)
    features *= torch.exp(torch.randn(batch, channels, 1, 1, generator=generator) * 3)  # magnitudes apart
    grid_x, grid_y = (torch.stack(pair) for pair in
                      zip(*(_random_points(generator, 64, height, width) for _ in range(batch))))
    got = model.gather_sample_points(model.flatten_for_sampling(features), (height, width), grid_x, grid_y)
    np.testing.assert_array_equal(_bits(got), _bits(_grid_sample_points(features, grid_x, grid_y)))


def _plain_float32_sampler(features, grid_x, grid_y):
    """Bilinear sampling with separate float32 multiplies and adds (what the sampler did before)."""
    height, width = features.shape[2:]
    x, y = (grid_x + 1) * (width / 2) - 0.5, (grid_y + 1) * (height / 2) - 0.5
    x0, y0 = x.floor(), y.floor()
    total = 0
    for corner_y, weight_y in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for corner_x, weight_x in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            inside = (corner_y >= 0) & (corner_y < height) & (corner_x >= 0) & (corner_x < width)
            index = (corner_y.clamp(0, height - 1) * width + corner_x.clamp(0, width - 1)).long()
            values = features.flatten(2)[0][:, index[0]] * inside[0]
            total = total + values * (weight_y * weight_x)[0]
    return total[None]


def test_plain_float32_arithmetic_is_not_grid_sample():
    """Why the sampler emulates fused multiply-adds: separate roundings miss in the last bit."""
    generator = torch.Generator().manual_seed(7)
    features = torch.randn(1, 16, 13, 17, generator=generator)
    grid_x, grid_y = (v[None] for v in _random_points(generator, 500, 13, 17))
    reference = _bits(_grid_sample_points(features, grid_x, grid_y))
    plain = _bits(_plain_float32_sampler(features, grid_x, grid_y))
    assert (plain != reference).mean() > 0.05  # measured 30 % on this CPU (AVX-512, FMA)
    got = model.gather_sample_points(model.flatten_for_sampling(features), (13, 17), grid_x, grid_y)
    np.testing.assert_array_equal(_bits(got), reference)


def _exact_float32(value: Fraction) -> np.float32:
    """The float32 nearest to an exact rational, ties to even (the reference FMA rounding)."""
    guess = np.float32(float(value))
    candidates = [np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf))]
    return min(candidates, key=lambda c: (abs(Fraction(float(c)) - value), int(np.array(c).view(np.int32)) & 1))


def test_fused_multiply_add_rounds_once():
    rng = np.random.default_rng(11)
    a = (rng.standard_normal(3000) * np.exp(rng.normal(0, 8, 3000))).astype(np.float32)
    b = rng.random(3000).astype(np.float32) * rng.random(3000).astype(np.float32)
    c = (rng.standard_normal(3000) * np.exp(rng.normal(0, 8, 3000))).astype(np.float32)
    # Exact halfway cases of the float64 sum: 1 + (2^-24 + tiny), the product of the two float32
    # numbers below, must round up to 1 + 2^-23; float64 then float32 rounds it down to 1.
    hard_a, hard_b = np.float32(1 + 2896 * 2.0 ** -23), np.float32(2.0 ** -24 * (1 - 2895 * 2.0 ** -23))
    a = np.concatenate([a, [hard_a, -hard_a]]).astype(np.float32)
    b = np.concatenate([b, [hard_b, hard_b]]).astype(np.float32)
    c = np.concatenate([c, [1.0, -1.0]]).astype(np.float32)
    got = model.fused_multiply_add(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)).numpy()
    expected = np.array([_exact_float32(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z)))
                         for x, y, z in zip(a, b, c)], dtype=np.float32)
    np.testing.assert_array_equal(got.view(np.int32), expected.view(np.int32))
    assert got[-2] == np.float32(1 + 2.0 ** -23) and got[-1] == -got[-2]
    twice_rounded = (a.astype(np.float64) * b + c).astype(np.float32)
    assert twice_rounded[-2] == 1.0  # what the correction is for


@pytest.mark.parametrize("grid_hw", [(48, 80), (37, 53), (1024, 2048)])
def test_cell_centres_are_detectron2_coordinates(grid_hw):
    """get_uncertain_point_coords_on_grid, then point_sample's 2 * c - 1, in float32 as torch runs it."""
    height, width = grid_hw
    chosen = torch.randperm(height * width, generator=torch.Generator().manual_seed(0))[None, :5000]
    coords = torch.zeros(1, chosen.shape[1], 2)
    coords[:, :, 0] = (1.0 / width) / 2.0 + (chosen % width).to(torch.float) * (1.0 / width)
    coords[:, :, 1] = (1.0 / height) / 2.0 + (chosen // width).to(torch.float) * (1.0 / height)
    expected = 2.0 * coords - 1.0
    grid_x, grid_y = model.cell_centre_grid(chosen, grid_hw)
    np.testing.assert_array_equal(_bits(grid_x), _bits(expected[..., 0]))
    np.testing.assert_array_equal(_bits(grid_y), _bits(expected[..., 1]))


class _GatherSampler(torch.nn.Module):
    def __init__(self, feature_hw, exact=True):
        super().__init__()
        self.feature_hw, self.exact = feature_hw, exact

    def forward(self, features, grid_x, grid_y):
        flat = model.flatten_for_sampling(features)
        return model.gather_sample_points(flat, self.feature_hw, grid_x, grid_y, self.exact)


def _export_sampler_and_run(tmp_path, feature_hw, inputs, exact=True):
    path = tmp_path / f"sampler_{exact}.onnx"
    torch.onnx.export(_GatherSampler(feature_hw, exact), inputs, str(path), opset_version=11,
                      dynamo=False, input_names=["features", "grid_x", "grid_y"])
    graph = onnx.load(str(path)).graph
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # as common.infer
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return graph, session.run(None, dict(zip(("features", "grid_x", "grid_y"), (t.numpy() for t in inputs))))[0]


def _casts_to_double(graph) -> int:
    return sum(1 for node in graph.node if node.op_type == "Cast"
               and any(a.name == "to" and a.i == onnx.TensorProto.DOUBLE for a in node.attribute))


@pytest.mark.parametrize("seed, feature_hw", [(0, (6, 10)), (1, (13, 7)), (2, (1, 31)), (3, (32, 64))])
def test_exported_sampler_on_onnx_runtime_equals_grid_sample_bit_for_bit(tmp_path, seed, feature_hw):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 11, *feature_hw, generator=generator)
    grid_x, grid_y = (torch.stack(pair) for pair in zip(*(_random_points(generator, 700, *feature_hw)
                                                         for _ in range(2))))
    graph, got = _export_sampler_and_run(tmp_path, feature_hw, (features, grid_x, grid_y))
    op_types = {node.op_type for node in graph.node}
    assert "GridSample" not in op_types and "Gather" in op_types
    np.testing.assert_array_equal(got.view(np.int32), _bits(_grid_sample_points(features, grid_x, grid_y)))


def test_float32_sampler_graph_has_no_float64_and_stays_close(tmp_path):
    generator = torch.Generator().manual_seed(5)
    features = torch.randn(1, 16, 24, 40, generator=generator)
    grid_x, grid_y = (v[None] for v in _random_points(generator, 4000, 24, 40))
    inputs = (features, grid_x, grid_y)
    expected = _grid_sample_points(*inputs).numpy()
    graph, got = _export_sampler_and_run(tmp_path, (24, 40), inputs, exact=False)
    assert _casts_to_double(graph) == 0
    differ = got.view(np.int32) != expected.view(np.int32)
    assert 0 < differ.mean() < 0.5
    # The position rounds in its last bit too (x up to 40: 4e-6 px), times the map's slope.
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(features.numpy()).max()
    exact_graph, _ = _export_sampler_and_run(tmp_path, (24, 40), inputs, exact=True)
    assert _casts_to_double(exact_graph) > 0


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
    np.testing.assert_array_equal(_bits(got), _bits(expected))  # no ties here: detectron2's numbers
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
