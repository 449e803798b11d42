"""bench/stacked-mnist/zero-one-data, the experiment plugin that puts PacGAN's [0, 1] data
back under a Tanh generator (docs/results.md, PacGAN's Table 2 setting)."""
import importlib.util
from pathlib import Path

import torch

import gantrix
from gantrix import ModelSpec


def test_the_zero_one_data_experiment_maps_the_generators_tanh_onto_2y_minus_1():
    """bench/stacked-mnist/zero-one-data: their Tanh output against [0, 1] data, seen in
    gantrix's [−1, 1] scale, is 2·tanh(h) − 1 (range [−3, 1])."""
    path = (Path(__file__).parents[2] / "bench" / "stacked-mnist" / "zero-one-data"
            / "gantrix_zero_one_data.py")
    spec_ = importlib.util.spec_from_file_location("gantrix_zero_one_data_under_test", path)
    module = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(module)
    spec = ModelSpec((3, 8, 8), latent_dim=4, width=4)
    dcgan = gantrix.make("dcgan", refine=False)
    plain = dcgan.gantrix_build_model(role="generator", spec=spec)
    wrapped = dcgan.gantrix_build_model(role="generator", spec=spec)
    wrapped.load_state_dict(plain.state_dict())
    trick = module.ZeroOneData()
    wrapped = trick.gantrix_transform_model(model=wrapped, role="generator", spec=spec)
    critic = dcgan.gantrix_build_model(role="discriminator", spec=spec)
    assert trick.gantrix_transform_model(model=critic, role="discriminator", spec=spec) is None
    z = torch.randn(5, 4)
    assert torch.allclose(wrapped(z), 2 * plain(z) - 1)
    assert dcgan.gantrix_check_model(model=wrapped, role="generator") == []
