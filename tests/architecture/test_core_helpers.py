"""The core helpers the architecture tricks share: find_layers and widen_input."""
import pytest
import torch
from torch import nn

from gantrix.models import ModelSpec, VectorCritic, find_layers, widen_input


class Wrapper(nn.Module):
    def __init__(self, wrapped):
        super().__init__()
        self.wrapped = wrapped


def test_find_layers_looks_through_wrappers():
    critic = VectorCritic(ModelSpec((2,)), hidden=8)
    assert find_layers(critic) is critic.net
    assert find_layers(Wrapper(Wrapper(critic))) is critic.net
    assert find_layers(nn.Linear(2, 2)) is None


@pytest.mark.parametrize("layer, x, y_extra", [
    (nn.Linear(5, 3), torch.randn(4, 5), torch.randn(4, 2)),
    (nn.Conv2d(3, 6, 4, 2, 1), torch.randn(4, 3, 8, 8), torch.randn(4, 2, 8, 8)),
    (nn.ConvTranspose2d(3, 6, 4, 2, 1), torch.randn(4, 3, 5, 5), torch.randn(4, 2, 5, 5)),
])
def test_widen_input_keeps_the_old_function_and_adds_a_block(layer, x, y_extra):
    wide = widen_input(layer, 2)
    # zeros in the new inputs: the very same output
    torch.testing.assert_close(wide(torch.cat([x, torch.zeros_like(y_extra)], 1)), layer(x))
    # concatenation = the old layer + a bias-free map of the extra inputs
    if isinstance(layer, nn.Linear):
        extra = nn.Linear(2, layer.out_features, bias=False)
    else:
        extra = type(layer)(2, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                            bias=False)
    dim = 0 if isinstance(layer, nn.ConvTranspose2d) else 1
    with torch.no_grad():
        extra.weight.copy_(wide.weight.narrow(dim, layer.weight.shape[dim], 2))
    torch.testing.assert_close(wide(torch.cat([x, y_extra], 1)), layer(x) + extra(y_extra))


def test_widen_input_draws_new_weights_like_the_old():
    layer = nn.Conv2d(64, 64, 4)
    nn.init.normal_(layer.weight, 0.0, 0.02)
    wide = widen_input(layer, 64)
    new = wide.weight[:, 64:]
    assert abs(new.std().item() - 0.02) < 0.001 and abs(new.mean().item()) < 0.001


def test_widen_input_refuses_what_it_cannot_widen():
    with pytest.raises(TypeError, match="BatchNorm2d"):
        widen_input(nn.BatchNorm2d(3), 1)
    with pytest.raises(TypeError, match="grouped"):
        widen_input(nn.Conv2d(4, 4, 3, groups=2), 1)
    with pytest.raises(TypeError, match="parametrized"):
        widen_input(torch.nn.utils.parametrizations.spectral_norm(nn.Linear(3, 3)), 1)
