"""minibatch-stddev: the appended statistic against the formula, and the critic it changes."""
import pytest
import torch
from torch import nn

import gantrix
from gantrix import CompositionError, ModelSpec
from gantrix.models import ConvCritic, VectorCritic
from gantrix.plugins.minibatch_stddev import MinibatchStdDev, group_size


def reference(x, group):
    """Loop version in float64: sample b's group is {b mod M + k·M}, M = B / group."""
    x = x.double()
    b = x.shape[0]
    m = b // group
    out = torch.empty(b, dtype=torch.float64)
    for j in range(m):
        members = x[j::m]
        assert len(members) == group
        var = ((members - members.mean(0)) ** 2).mean(0)
        out[j::m] = (var + 1e-8).sqrt().mean()
    return out


@pytest.mark.parametrize("shape, group", [((8, 3, 4, 4), 4), ((8, 5), 2), ((6, 2, 3, 3), 3),
                                          ((4, 7), 4)])
def test_statistic_matches_the_formula(shape, group):
    x = torch.randn(*shape)
    y = MinibatchStdDev(group)(x)
    assert y.shape == (shape[0], shape[1] + 1, *shape[2:])
    torch.testing.assert_close(y[:, :shape[1]], x)
    extra = y[:, shape[1]]
    expected = reference(x, group).float().reshape(-1, *[1] * (x.dim() - 2)).expand_as(extra)
    torch.testing.assert_close(extra, expected)


def test_group_is_capped_at_the_batch():
    assert group_size(8, 4) == 4 and group_size(4, 4) == 4 and group_size(2, 4) == 2
    assert group_size(3, 4) == 3 and group_size(12, 4) == 4
    x = torch.randn(3, 5)  # a batch smaller than the group is one group (ProGAN's min)
    torch.testing.assert_close(MinibatchStdDev(4)(x)[:, 5], reference(x, 3).float())


@pytest.mark.parametrize("batch, group, fits", [(6, 4, "2, 3, 6"), (7, 4, "7"), (10, 4, "2, 5, 10"),
                                                (9, 2, "3, 9")])
def test_a_group_that_does_not_divide_the_batch_is_an_error(batch, group, fits):
    """Not a silently smaller group: for a prime batch that would be groups of one sample,
    whose spread is 0, a constant feature."""
    with pytest.raises(gantrix.ParamError, match=rf"parameter 'group' is {group}, which does not "
                                                 rf"divide the batch of {batch}.*allowed for this "
                                                 rf"batch: {fits} "):
        MinibatchStdDev(group)(torch.randn(batch, 3))


def test_a_collapsed_batch_gets_a_smaller_statistic():
    varied = torch.randn(8, 16)
    collapsed = varied[:1].repeat(8, 1) + 0.01 * torch.randn(8, 16)
    layer = MinibatchStdDev(4)
    assert (layer(collapsed)[:, -1] < 0.1 * layer(varied)[:, -1]).all()


@pytest.mark.parametrize("critic, x", [
    (VectorCritic(ModelSpec((2,)), hidden=16), torch.randn(8, 2)),
    (ConvCritic(ModelSpec((3, 16, 16), width=8)), torch.randn(8, 3, 16, 16)),
])
def test_inserts_before_the_last_layer_and_widens_it(critic, x):
    last = critic.net[-1]
    before = last.weight.detach().clone()
    trick = gantrix.make("minibatch-stddev", group=2)
    assert trick.gantrix_transform_model(model=critic, role="discriminator", spec=None) is critic
    assert isinstance(critic.net[-2], MinibatchStdDev) and critic.net[-2].group == 2
    new = critic.net[-1]
    torch.testing.assert_close(new.weight[:, :before.shape[1]], before)
    assert new.weight.shape[1] == before.shape[1] + 1
    assert critic(x).shape == (8,)


def test_leaves_the_generator_alone_and_finds_the_last_weight_layer():
    trick = gantrix.make("minibatch-stddev")
    assert trick.gantrix_transform_model(model=nn.Linear(2, 2), role="generator", spec=None) is None
    critic = ConvCritic(ModelSpec((1, 8, 8), width=4))
    critic.net.append(nn.Sigmoid())  # dcgan:output=sigmoid
    trick.gantrix_transform_model(model=critic, role="discriminator", spec=None)
    assert isinstance(critic.net[-3], MinibatchStdDev) and isinstance(critic.net[-1], nn.Sigmoid)


def test_an_unknown_critic_is_an_error():
    comp = gantrix.Recipe("nonsaturating", "minibatch-stddev").compose()
    with pytest.raises(CompositionError, match="minibatch-stddev"):
        gantrix.build_models(comp, ModelSpec((2,)), discriminator=nn.Linear(2, 1))


def test_runs_before_infogan_whose_q_head_sees_the_extra_channel(run):
    spec = ModelSpec((1, 8, 8), latent_dim=8, width=8)
    _, models, out = run(("nonsaturating", "infogan", "minibatch-stddev"), spec)
    d = models.discriminator
    assert isinstance(d.wrapped.net[-2], MinibatchStdDev)
    assert d.q[0].in_channels == d.wrapped.net[-1].in_channels == spec.width + 1
    assert all(torch.isfinite(v) for v in out.values())
