"""Inception-V3 features (gantrix.inception): the weights checks, which need no torch-fidelity
and run everywhere, and — where torch-fidelity imports — the offline path end to end:
gantrix's FID, KID and precision/recall on the library's network with random weights equal
the library's own computation on the same images."""
from __future__ import annotations

import sys

import pytest
import torch

import gantrix.inception as inception
from gantrix.errors import GantrixError
from gantrix.inception import (InceptionUnavailable, InceptionWeightsError, WEIGHTS_FILE,
                               WEIGHTS_URL, expected_shapes, inception_features, load_weights)
from gantrix.quality import fid, kid, precision_recall

try:
    import torch_fidelity
    from torch_fidelity import feature_extractor_inceptionv3 as tf_inception
    NO_LIBRARY = ""
except Exception as exc:  # ImportError, or torchvision's RuntimeError beside a CPU torch wheel
    NO_LIBRARY = (f"torch-fidelity (the metrics extra) cannot be imported here: "
                  f"{type(exc).__name__}: {exc}")

needs_library = pytest.mark.skipif(bool(NO_LIBRARY), reason=NO_LIBRARY or "-")


@pytest.fixture(autouse=True)
def fresh_network_cache():
    inception._network.cache_clear()
    yield
    inception._network.cache_clear()


@pytest.fixture
def no_library(monkeypatch):
    """torch-fidelity made unimportable, wherever the test runs."""
    for name in ("torch_fidelity", "torch_fidelity.feature_extractor_inceptionv3"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub folder in place of the user's."""
    folder = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(folder))
    return folder


def _random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict of the right names and shapes, built without the library."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) * 0.01 for k, shape in expected_shapes().items()}


def _save(tmp_path, state, name="weights.pth"):
    path = tmp_path / name
    torch.save(state, path)
    return path


# --------------------------------------------------------------------------- runs everywhere


def test_missing_extra_is_a_clear_error(tmp_path, no_library):
    path = _save(tmp_path, _random_state())
    with pytest.raises(InceptionUnavailable) as info:
        inception_features(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), weights=path)
    message = str(info.value)
    assert "pip install -e '.[metrics]'" in message and "torch-fidelity" in message
    assert "ModuleNotFoundError" in message  # what failed


class _TorchvisionBreaks:
    """Importing torch-fidelity fails as it does beside a CPU torch wheel: torchvision raises."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch_fidelity":
            raise RuntimeError("operator torchvision::nms does not exist")
        return None


def test_a_torchvision_that_does_not_load_is_a_clear_error(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "torch_fidelity"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_TorchvisionBreaks(), *sys.meta_path])
    path = _save(tmp_path, _random_state())
    with pytest.raises(InceptionUnavailable) as info:
        inception_features(torch.zeros(2, 1, 8, 8), weights=path)
    message = str(info.value)
    assert "RuntimeError: operator torchvision::nms does not exist" in message
    assert "pip install -e '.[metrics]'" in message and "torchvision" in message


@pytest.mark.skipif(not NO_LIBRARY, reason="torch-fidelity imports here")
def test_missing_extra_here_names_what_failed(tmp_path):
    path = _save(tmp_path, _random_state())
    with pytest.raises(InceptionUnavailable) as info:
        inception_features(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), weights=path)
    assert "pip install -e '.[metrics]'" in str(info.value)
    assert NO_LIBRARY.split(": ", 1)[1] in str(info.value)


def test_missing_weights_file_names_the_file_the_url_and_the_flag(tmp_path, hub):
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(InceptionUnavailable) as info:
        inception_features(images)
    message = str(info.value)
    assert str(hub / "checkpoints" / WEIGHTS_FILE) in message
    assert WEIGHTS_URL in message and "--inception-weights" in message
    given = tmp_path / "elsewhere.pth"
    with pytest.raises(InceptionUnavailable, match="no Inception-V3 weights file at .*elsewhere.pth") as info:
        inception_features(images, weights=given)
    assert WEIGHTS_URL in str(info.value) and "--inception-weights" in str(info.value)


def test_weights_are_found_where_the_library_keeps_them(hub, no_library):
    """A file at the torch hub's checkpoints folder is found and checked: what stops the
    features then is the missing extra, not the weights."""
    (hub / "checkpoints").mkdir(parents=True)
    torch.save(_random_state(), hub / "checkpoints" / WEIGHTS_FILE)
    with pytest.raises(InceptionUnavailable, match=r"pip install -e '\.\[metrics\]'"):
        inception_features(torch.zeros(1, 1, 8, 8))


class _RunsCode:
    """Unpickling this creates a file: code a weights file must never run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_weights_file_with_pickled_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    state = _random_state()
    state["fc.bias"] = _RunsCode(marker)
    path = _save(tmp_path, state)
    with pytest.raises(InceptionWeightsError, match="pickled objects other than tensors") as info:
        inception_features(torch.zeros(1, 3, 8, 8), weights=path)
    assert "open" in str(info.value)  # what it would have called
    assert not marker.exists()


def test_a_state_dict_of_another_architecture_names_the_keys(tmp_path):
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8)).state_dict()
    with pytest.raises(InceptionWeightsError) as info:
        inception_features(torch.zeros(1, 3, 8, 8), weights=_save(tmp_path, other))
    message = str(info.value)
    assert "not the Inception-V3 network" in message
    assert f"{len(expected_shapes())} missing key(s): Conv2d_1a_3x3.conv.weight" in message
    assert "unexpected key(s): 0.weight, 0.bias, 1.weight" in message

    state = _random_state()
    state["Mixed_6b.branch7x7_2.conv.weight"] = torch.zeros(128, 128, 7, 1)
    del state["fc.bias"]
    with pytest.raises(InceptionWeightsError) as info:
        load_weights(_save(tmp_path, state, "near.pth"))
    message = str(info.value)
    assert "1 missing key(s): fc.bias" in message
    assert "Mixed_6b.branch7x7_2.conv.weight (128, 128, 7, 1) instead of (128, 128, 1, 7)" in message


def test_unreadable_and_foreign_files(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(InceptionWeightsError, match="not a readable PyTorch weights file"):
        load_weights(text)
    with pytest.raises(InceptionWeightsError, match="not a state dict .* list"):
        load_weights(_save(tmp_path, [torch.zeros(1)], "list.pth"))


def test_counters_are_optional_and_filled_in(tmp_path):
    """The batch norms' num_batches_tracked may be in the file or not."""
    state = load_weights(_save(tmp_path, _random_state()))
    assert state["Conv2d_1a_3x3.bn.num_batches_tracked"].item() == 0
    assert set(state) - set(expected_shapes()) == {k for k in state if k.endswith("num_batches_tracked")}
    with_counters = dict(state, **{"Conv2d_1a_3x3.bn.num_batches_tracked": torch.tensor(7)})
    assert load_weights(_save(tmp_path, with_counters, "c.pth"))["Conv2d_1a_3x3.bn.num_batches_tracked"] == 7


@pytest.mark.parametrize("images,words", [
    (torch.zeros(2, 2, 8, 8), "C = 1 or 3"),
    (torch.zeros(2, 8, 8), "N × C × H × W"),
    (torch.zeros(2, 3, 8, 8, dtype=torch.int64), "uint8 images or floats"),
    (torch.full((2, 3, 8, 8), float("nan")), "NaN"),
    ([[0.0]], "tensor"),
])
def test_bad_images_are_refused_before_anything_loads(images, words, hub):
    with pytest.raises(GantrixError, match=words):
        inception_features(images)


def test_float_images_map_to_uint8_as_stylegan_does():
    x = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    assert inception.to_uint8(x).tolist() == [0, 0, 64, 128, 191, 255, 255]


# --------------------------------------------------------------------------- with the library


def _library_network_with_random_weights():
    """The library's own network, built without its weights (its loading patched out), with
    He-initialised convolutions so its 2048 features are far from degenerate."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tf_inception, "load_state_dict_from_url", lambda *a, **k: {})
        mp.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        net = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.manual_seed(0)
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.bias, -0.1, 0.1)
    return net


class _Images(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


@needs_library
def test_the_architecture_table_is_the_library_network():
    net = _library_network_with_random_weights()
    lib = {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert lib == expected_shapes()
    assert tf_inception.URL_INCEPTION_V3 == WEIGHTS_URL


@needs_library
@pytest.mark.slow
def test_offline_metrics_equal_the_library_own(tmp_path):
    """Random weights saved to a file, pointed at: gantrix's features and metrics against
    torch-fidelity's own `calculate_metrics` on the same images (about 60 Inception passes)."""
    path = tmp_path / "random-inception.pth"
    torch.save(_library_network_with_random_weights().state_dict(), path)
    g = torch.Generator().manual_seed(1)
    n = 8
    a = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    b = (a.float() * 0.6 + 40).to(torch.uint8)                       # dimmer copies
    gray = torch.rand(n, 1, 28, 28, generator=g) * 2 - 1              # floats in [-1, 1], one channel
    gray_rgb = inception.to_uint8(gray).repeat(1, 3, 1, 1)

    fa, fb = inception_features(a, weights=path, batch_size=3), inception_features(b, weights=path)
    fg = inception_features(gray, weights=path)
    assert fa.shape == (n, 2048) and fa.dtype == torch.float64 and fa.std(0).mean() > 0
    torch.testing.assert_close(fg[:2], inception_features(gray_rgb[:2], weights=path))

    for other_images, other in [(b, fb), (gray_rgb, fg)]:
        theirs = torch_fidelity.calculate_metrics(
            input1=_Images(a), input2=_Images(other_images), cuda=False, fid=True, kid=True,
            prc=True, feature_extractor="inception-v3-compat",
            feature_extractor_weights_path=str(path), kid_subsets=5, kid_subset_size=n,
            rng_seed=3, cache=False, verbose=False, save_cpu_ram=True)
        assert fid(fa, other) == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
        mean, _ = kid(fa, other, subsets=5, subset_size=n, seed=3)
        assert mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-3, abs=1e-6)
        # the library's input1 is the generated side: precision is input1 in input2's balls
        precision, recall = precision_recall(other, fa)
        assert (precision, recall) == pytest.approx((theirs["precision"], theirs["recall"]))
