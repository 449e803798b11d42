"""cgan: both models conditioned by input concatenation, labels routed by the batch."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gantrix
from gantrix import CompositionError, GantrixError, ModelSpec
from gantrix.batch import Batch
from gantrix.models import default_model

VECTORS = ModelSpec((2,), num_classes=8, latent_dim=16, width=8)
IMAGES = ModelSpec((1, 8, 8), num_classes=10, latent_dim=16, width=8)


def conditioned(spec, build="default", **params):
    trick = gantrix.make("cgan", **params)
    out = {}
    for role in ("generator", "discriminator"):
        model = (gantrix.make("dcgan").gantrix_build_model(role=role, spec=spec)
                 if build == "dcgan" else default_model(role, spec))
        out[role] = (model, trick.gantrix_transform_model(model=model, role=role, spec=spec))
    return trick, out


RGB = ModelSpec((3, 16, 16), num_classes=4, latent_dim=8, width=8)


@pytest.mark.parametrize("spec, build", [(VECTORS, "default"), (IMAGES, "default"),
                                         (IMAGES, "dcgan"), (RGB, "dcgan")])
def test_wraps_and_accepts_labels(spec, build):
    _, m = conditioned(spec, build)
    (g0, g), (d0, d) = m["generator"], m["discriminator"]
    k = spec.num_classes
    z, y = torch.randn(6, spec.latent_dim), torch.arange(6) % k
    x = g(z, labels=y)
    assert x.shape == (6, *spec.shape)
    assert g(z).shape == x.shape  # sampling without labels draws them
    assert d(x, labels=y).shape == (6,)
    # G(z | y) is the wrapped model on [z, one-hot(y)]
    torch.testing.assert_close(x, g0(torch.cat([z, F.one_hot(y, k).float()], 1)))
    # the label changes the sample and the score
    assert not torch.allclose(x, g(z, labels=(y + 1) % k))
    assert not torch.allclose(d(x, labels=y), d(x, labels=(y + 1) % k))
    with pytest.raises(GantrixError, match="labelled data"):
        d(x)


def test_first_layers_are_widened_with_their_weights_kept():
    trick = gantrix.make("cgan")
    for role, width in (("generator", 16), ("discriminator", 2)):
        model = default_model(role, VECTORS)
        before = model.net[0].weight.detach().clone()
        trick.gantrix_transform_model(model=model, role=role, spec=VECTORS)
        layer = model.net[0]
        assert layer.in_features == width + 8
        torch.testing.assert_close(layer.weight[:, :width], before)
        assert layer.weight[:, width:].std() > 0


def test_images_get_one_label_map_per_class():
    _, m = conditioned(IMAGES, "dcgan")
    d0, d = m["discriminator"]
    seen = []
    d0.net[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    x, y = torch.randn(3, 1, 8, 8), torch.tensor([0, 4, 9])
    d(x, labels=y)
    (inp,) = seen
    assert inp.shape == (3, 11, 8, 8)
    torch.testing.assert_close(inp[:, :1], x)
    expected = F.one_hot(y, 10).float()[:, :, None, None].expand(3, 10, 8, 8)
    torch.testing.assert_close(inp[:, 1:], expected)


def test_learned_embedding_is_trained():
    _, m = conditioned(VECTORS, embedding="learned")
    (_, g), (_, d) = m["generator"], m["discriminator"]
    for model in (g, d):
        assert isinstance(model.code.embed, nn.Embedding)
        assert model.code.embed.weight.shape == (8, 8)
    y = torch.tensor([1, 2, 3])
    d(g(torch.randn(3, 16), labels=y), labels=y).sum().backward()
    assert g.code.embed.weight.grad[1:4].abs().sum() > 0
    assert g.code.embed.weight.grad[4:].abs().sum() == 0


def test_unlabelled_data_is_a_build_error():
    comp = gantrix.Recipe("nonsaturating", "cgan").compose()
    with pytest.raises(CompositionError, match="needs labelled data"):
        gantrix.build_models(comp, ModelSpec((2,)))


class NoStack(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(18, 2)

    def forward(self, z):
        return self.body(z)


class OwnLabels(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(2, 1)

    def forward(self, x, labels):
        return self.body(x).squeeze(1) + labels


def test_user_models_need_labels_support_or_a_layer_stack():
    comp = gantrix.Recipe("nonsaturating", "cgan").compose()
    with pytest.raises(CompositionError, match="labels= keyword") as err:
        gantrix.build_models(comp, VECTORS, generator=NoStack())
    assert [f.tricks for f in err.value.findings if f.severity == "error"] == [("cgan",)]
    own = OwnLabels()
    models = gantrix.build_models(gantrix.Recipe("nonsaturating", "cgan").compose(), VECTORS,
                                  discriminator=own)
    assert models.discriminator is own


def make_batch(labels, n=5):
    return Batch(real=torch.randn(n if labels is None else len(labels), 2), critic=None,
                 phase="discriminator", step=0, labels=labels)


def test_condition_routes_labels():
    trick, _ = conditioned(VECTORS)
    y = torch.tensor([3, 1, 4, 1, 5])
    batch = make_batch(y)
    trick.gantrix_condition(batch=batch)
    assert batch.fake_labels is y and batch.generator_inputs["labels"] is y
    assert batch.critic_inputs == {"real": {"labels": y}, "fake": {"labels": y}}

    trick, _ = conditioned(VECTORS, fake_labels="uniform")
    y = torch.zeros(4000, dtype=torch.long)
    batch = make_batch(y)
    trick.gantrix_condition(batch=batch)
    fake = batch.fake_labels
    assert batch.critic_inputs["real"]["labels"] is y
    assert batch.critic_inputs["fake"]["labels"] is fake
    assert batch.generator_inputs["labels"] is fake
    assert fake.min() == 0 and fake.max() == 7
    assert torch.bincount(fake, minlength=8).float().div(4000).sub(1 / 8).abs().max() < 0.03


def test_sampling_keeps_the_labels_asked_for_and_otherwise_draws_them():
    trick, _ = conditioned(VECTORS)
    asked = torch.tensor([7, 7, 2, 0, 1])
    batch = make_batch(None)
    batch.fake_labels = asked
    trick.gantrix_condition(batch=batch)
    assert batch.generator_inputs["labels"] is asked and batch.critic_inputs["real"] == {}
    batch = make_batch(None, n=3000)
    trick.gantrix_condition(batch=batch)
    freq = torch.bincount(batch.fake_labels, minlength=8).float() / 3000
    assert (freq - 1 / 8).abs().max() < 0.03


def test_training_on_unlabelled_batches_is_a_clear_error(data):
    composition = gantrix.Recipe("nonsaturating", "cgan").compose()
    models = gantrix.build_models(composition, VECTORS)
    step = gantrix.ComposedStep(composition, models, VECTORS)
    with pytest.raises(GantrixError, match="labelled data"):
        step.step(lambda: (data(VECTORS)()[0], None))
