"""The data sources: built-in distributions and data sets, image folders, tensor files, and
the exact continuation of their batch streams from a saved state."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from gantrix import GantrixError
from gantrix.data import TensorData, Toy2D, load_data


@pytest.mark.parametrize("name, modes, sigma, variance", [("ring8", 8, 0.02, 2.0),
                                                           ("grid25", 25, 0.05, 8.0)])
def test_mixtures_have_the_documented_modes(name, modes, sigma, variance):
    data = load_data(name, seed=3)
    x, labels = data.next_batch(4000)
    assert x.shape == (4000, 2) and x.dtype == torch.float32 and labels is None
    # batches come at unit scale; the mixture's variance per coordinate is that of its
    # centres (ring: 4·mean cos² = 2; grid: mean of {16, 4, 0, 4, 16} = 8) plus σ²
    assert data.scale == pytest.approx(math.sqrt(variance + sigma ** 2), rel=5e-3)
    assert x.std(0).tolist() == pytest.approx([1.0, 1.0], abs=0.05)
    x = x * data.scale
    centres = data.target.centres
    assert len(centres) == modes
    if name == "ring8":
        assert torch.allclose(centres.norm(dim=1), torch.full((8,), 2.0, dtype=torch.float64))
    else:
        assert sorted({round(float(v), 6) for v in centres.flatten()}) == [-4, -2, 0, 2, 4]
    # every sample lies near a centre, with the documented spread
    d = torch.cdist(x.double(), centres).min(1).values
    assert d.max() < 6 * sigma
    # the distance to the centre of a 2-D Gaussian has mean σ·sqrt(π/2)
    assert float(d.mean()) == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=0.05)


def test_spiral_samples_lie_on_the_curve():
    data = load_data("spiral")
    x, _ = data.next_batch(2000)
    assert x.std(0).tolist() == pytest.approx([1.0, 1.0], abs=0.1)
    x = x * data.scale
    _, dist = data.target.nearest(x)
    assert float((dist <= 3 * 0.05).double().mean()) > 0.98
    assert x.norm(dim=1).max() < 4.5


def test_toy_stream_is_seeded_and_resumes_exactly():
    a, b = Toy2D("ring8", seed=1), Toy2D("ring8", seed=1)
    assert torch.equal(a.next_batch(16)[0], b.next_batch(16)[0])
    assert not torch.equal(a.next_batch(16)[0], Toy2D("ring8", seed=2).next_batch(16)[0])
    state = a.state_dict()
    expected = [a.next_batch(8)[0] for _ in range(3)]
    c = Toy2D("ring8", seed=99)
    c.load_state_dict(state)
    assert all(torch.equal(e, c.next_batch(8)[0]) for e in expected)


def test_reference_samples_do_not_touch_the_stream():
    a, b = Toy2D("grid25", seed=0), Toy2D("grid25", seed=0)
    a.reference(100)
    assert torch.equal(a.next_batch(8)[0], b.next_batch(8)[0])


def test_tensor_data_serves_shuffled_epochs_and_resumes():
    x = torch.arange(10.0)[:, None]
    data = TensorData("t", x, torch.arange(10) % 3, seed=0)
    first = torch.cat([data.next_batch(4)[0] for _ in range(5)]).flatten()  # two epochs
    assert sorted(first[:10].tolist()) == list(range(10))
    assert sorted(first[10:].tolist()) == list(range(10))
    assert first[:10].tolist() != first[10:].tolist()  # a fresh order per epoch
    state = data.state_dict()
    expected = [data.next_batch(3) for _ in range(4)]
    again = TensorData("t", x, torch.arange(10) % 3, seed=5)
    again.load_state_dict(state)
    for (ex, ey) in expected:
        gx, gy = again.next_batch(3)
        assert torch.equal(ex, gx) and torch.equal(ey, gy)
        assert torch.equal(gy, gx.flatten().long() % 3)  # labels stay with their samples


def test_digits_are_scaled_and_labelled():
    data = load_data("digits")
    assert data.shape == (1, 8, 8) and data.num_classes == 10 and len(data) == 1797
    x = data.get()
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert sorted(data.labels.unique().tolist()) == list(range(10))


def _png(path, size=(12, 12), colour=None, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour if colour is not None else (255, 0, 0)).save(path)


def test_image_folder_with_subfolders_gives_labels(tmp_path):
    _png(tmp_path / "cats" / "a.png", colour=(255, 0, 0))
    _png(tmp_path / "cats" / "b.jpg", colour=(255, 0, 0))
    _png(tmp_path / "dogs" / "c.PNG", colour=(0, 0, 255))
    data = load_data(tmp_path, image_size=16)
    assert data.shape == (3, 16, 16) and data.num_classes == 2
    assert data.labels.tolist() == [0, 0, 1]  # sorted folder names are the classes
    x = data.get()
    dog = x[2]
    assert dog[2].min() > 0.99 and dog[0].max() < -0.99  # blue is +1 in channel 2, red is -1
    assert x.min() >= -1 and x.max() <= 1


def test_flat_grey_folder_gives_one_channel_without_labels(tmp_path):
    _png(tmp_path / "a.png", colour=0, mode="L")
    _png(tmp_path / "b.png", colour=255, mode="L")
    data = load_data(tmp_path, image_size=8)
    assert data.shape == (1, 8, 8) and data.num_classes is None and data.labels is None
    assert sorted(float(v) for v in data.get().mean((1, 2, 3))) == [-1.0, 1.0]


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "no images"),
    (lambda p: (p / "broken.png").write_bytes(b"not a png"), "cannot read image"),
])
def test_image_folder_errors(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(GantrixError, match=message):
        load_data(tmp_path)


@pytest.mark.parametrize("size", [12, 4, 512])
def test_image_size_must_be_a_power_of_two_in_range(tmp_path, size):
    _png(tmp_path / "a.png")
    with pytest.raises(GantrixError, match="power of two from 8 to 256"):
        load_data(tmp_path, image_size=size)


def test_missing_data_names_the_choices(tmp_path):
    with pytest.raises(GantrixError, match="ring8, grid25, spiral, digits"):
        load_data(tmp_path / "nowhere")


def test_npy_points_and_uint8_images(tmp_path):
    np.save(tmp_path / "pts.npy", np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32))
    pts = load_data(tmp_path / "pts.npy")
    assert pts.shape == (2,) and len(pts) == 50
    images = np.zeros((4, 8, 8), np.uint8)
    images[1] = 255
    np.save(tmp_path / "img.npy", images)
    img = load_data(tmp_path / "img.npy")
    assert img.shape == (1, 8, 8)
    x = img.get()
    assert x[0].max() == -1.0 and x[1].min() == 1.0


def test_pt_dict_with_labels(tmp_path):
    torch.save({"x": torch.zeros(6, 3, 16, 16), "labels": torch.tensor([0, 1, 2, 0, 1, 2])},
               tmp_path / "d.pt")
    data = load_data(tmp_path / "d.pt")
    assert data.shape == (3, 16, 16) and data.num_classes == 3


@pytest.mark.parametrize("content, message", [
    (np.zeros((5,), np.float32), "expected a non-empty tensor"),
    (np.zeros((4, 3, 12, 12), np.float32), "power of two"),
    (np.zeros((4, 3, 8, 16), np.float32), "square"),
])
def test_bad_tensor_files(tmp_path, content, message):
    np.save(tmp_path / "bad.npy", content)
    with pytest.raises(GantrixError, match=message):
        load_data(tmp_path / "bad.npy")


def test_unknown_file_type(tmp_path):
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(GantrixError, match="folder of images or a .npy or .pt"):
        load_data(tmp_path / "data.csv")
