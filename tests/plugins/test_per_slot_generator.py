"""bench/stacked-mnist/per-slot-generator, the experiment plugin that runs the generator once
per pack slot as PacGAN's code does (docs/results.md, PacGAN's Table 2 setting)."""
import importlib.util
from pathlib import Path

import pytest
import torch

import gantrix
from gantrix import GantrixError, ModelSpec

PATH = (Path(__file__).parents[2] / "bench" / "stacked-mnist" / "per-slot-generator"
        / "gantrix_per_slot_generator.py")


@pytest.fixture(scope="module")
def plugin():
    spec = importlib.util.spec_from_file_location("gantrix_per_slot_generator_under_test", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generators(plugin, m):
    """A DCGAN generator (with BatchNorm) and the same weights wrapped per slot."""
    torch.manual_seed(0)
    spec = ModelSpec((3, 8, 8), latent_dim=4, width=4)
    dcgan = gantrix.make("dcgan", refine=False)
    plain = dcgan.gantrix_build_model(role="generator", spec=spec)
    copy = dcgan.gantrix_build_model(role="generator", spec=spec)
    copy.load_state_dict(plain.state_dict())
    trick = plugin.PerSlotGeneratorTrick(m=m)
    assert trick.gantrix_transform_model(model=copy, role="discriminator", spec=spec) is None
    return plain, trick.gantrix_transform_model(model=copy, role="generator", spec=spec)


def test_in_training_slot_j_of_each_pack_comes_from_its_own_generator_call(plugin):
    """Pack p is samples p·m … p·m + m − 1 (pac's layout); slot j's samples, z[j::m], are
    made by one call, so BatchNorm normalises them over the B/m of that slot alone."""
    m, b = 3, 12
    plain, per_slot = generators(plugin, m)
    z = torch.randn(b, 4)
    out = per_slot(z)
    for j in range(m):
        assert torch.allclose(out[j::m], plain(z[j::m]), atol=1e-6)
    # one call over all b samples normalises differently: the experiment changes something
    assert not torch.allclose(out, plain(z), atol=1e-3)


def test_in_eval_mode_it_is_one_call_with_the_running_statistics(plugin):
    plain, per_slot = generators(plugin, 2)
    plain.eval()
    per_slot.eval()
    z = torch.randn(6, 4)
    assert torch.allclose(per_slot(z), plain(z))


def test_a_latent_batch_it_cannot_split_is_a_clear_error(plugin):
    _, per_slot = generators(plugin, 2)
    with pytest.raises(GantrixError, match="latent batch of 5 is not a multiple of m=2"):
        per_slot(torch.randn(5, 4))


def test_a_batch_it_cannot_split_is_refused_before_the_run(plugin):
    trick = plugin.PerSlotGeneratorTrick(m=3)
    assert trick.gantrix_check_settings(batch_size=192, processes=1) is None
    [finding] = trick.gantrix_check_settings(batch_size=128, processes=1)
    assert finding.severity == "error" and "batch of 128 is not a multiple of m=3" in finding.message
    [finding] = trick.gantrix_check_settings(batch_size=200, processes=2)
    assert "batch of 100 is not a multiple of m=3" in finding.message
