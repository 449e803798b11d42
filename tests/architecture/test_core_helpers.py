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


# --------------------------------------------------------------------------- gantrix.plugin's helpers


def test_layer_stack_and_widen_first_layer_say_what_is_missing():
    from gantrix.plugin import layer_stack, widen_first_layer

    critic = VectorCritic(ModelSpec((2,)), hidden=8)
    widen_first_layer(Wrapper(critic), 3)
    assert critic.net[0].in_features == 5 and layer_stack(critic) is critic.net
    with pytest.raises(TypeError, match="no `.net` layer stack"):
        widen_first_layer(nn.Linear(2, 2), 1)


def test_require_images_refuses_vectors_at_build_and_at_run_time():
    import gantrix
    from gantrix.plugin import require_images

    require_images("t", ModelSpec((3, 8, 8)), "sees images", "why")
    require_images("t", torch.zeros(2, 3, 8, 8), "sees images", "why")
    with pytest.raises(gantrix.ModelTransformError, match=r"^t sees images, but the data is "
                       r"vectors of shape \(2,\): it has no pixels; use image data, or drop t$"):
        require_images("t", ModelSpec((2,)), "sees images", "it has no pixels")
    with pytest.raises(gantrix.GantrixError, match=r"t sees images \(N, C, H, W\), but got "
                       r"samples of shape \(4, 2\)") as info:
        require_images("t", torch.zeros(4, 2), "sees images", "it has no pixels")
    assert not isinstance(info.value, gantrix.ModelTransformError)


@pytest.mark.parametrize("critic, x", [
    (VectorCritic(ModelSpec((2,)), hidden=8), torch.randn(4, 2)),
    (Wrapper(VectorCritic(ModelSpec((2,)), hidden=8)), None),
])
def test_insert_before_last_widens_the_last_layer_for_what_the_layer_appends(critic, x):
    from gantrix.plugin import BatchStatistic, insert_before_last

    class Ones(BatchStatistic):
        def forward(self, h):
            return torch.cat([h, torch.ones(h.shape[0], 2)], 1)

    net = find_layers(critic)
    before = [m for m in net]
    made = []
    out = insert_before_last(critic, 2, lambda layer: made.append(layer) or Ones(), "ones",
                             zero_new=True)
    assert out is critic and made == [before[-1]]
    assert isinstance(net[-2], Ones) and net[-1].in_features == before[-1].in_features + 2
    if x is not None:  # the new weights start at zero: the same function
        old = nn.Sequential(*before)
        torch.testing.assert_close(critic(x), old(x).squeeze(1))


def test_insert_before_last_names_the_trick_when_there_is_no_layer():
    import gantrix
    from gantrix.plugin import insert_before_last

    with pytest.raises(gantrix.ModelTransformError, match=r"cannot insert ones into the critic "
                       r"\(Wrapper\): it has no `.net` layer stack"):
        insert_before_last(Wrapper(nn.Identity()), 1, lambda layer: nn.Identity(), "ones")


def test_parse_policy_normalises_and_orders():
    import gantrix
    from gantrix.plugin import AUGMENTATIONS, parse_policy

    class Trick:
        name, policy = "t", "cutout, color+cutout"

    assert parse_policy(Trick) == ("cutout+color+cutout", [AUGMENTATIONS[n] for n in
                                                           ("cutout", "color", "cutout")])
    assert parse_policy(Trick, order=("color", "cutout"))[0] == "color+cutout"
    with pytest.raises(gantrix.ParamError, match="'policy' got 'cutout, color\\+cutout'; "
                       "allowed: augmentations joined by '\\+' from flip"):
        parse_policy(Trick, allowed=("flip",))


def test_label_helpers():
    import gantrix
    from gantrix.plugin import draw_labels, fake_labels

    labels = draw_labels(3, 64)
    assert labels.shape == (64,) and set(labels.tolist()) == {0, 1, 2}
    with pytest.raises(gantrix.GantrixError, match="^t draws class labels but does not know"):
        draw_labels(None, 4, owner="t")

    class Batch:
        fake_labels, labels, batch_size, device = None, torch.tensor([1, 1]), 2, "cpu"

    assert fake_labels(Batch, "real", None, "t") is Batch.labels
    assert fake_labels(Batch, "uniform", 5, "t").shape == (2,)
    Batch.fake_labels = torch.tensor([4, 4])
    assert fake_labels(Batch, "real", None, "t") is Batch.fake_labels
