"""infogan: codes into G, a Q head on D's shared body, and the mutual-information term."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gantrix
from gantrix import CompositionError, ModelSpec, ParamError
from gantrix.batch import Batch
from gantrix.models import Models, VectorCritic, VectorGenerator

VECTORS = ModelSpec((2,), latent_dim=8, width=8)
IMAGES = ModelSpec((1, 16, 16), latent_dim=8, width=8)


def built(spec, *extra, **params):
    comp = gantrix.Recipe("nonsaturating", *extra).compose()
    trick = gantrix.make("infogan", **params)
    comp.pm.register(trick, name="infogan")
    models = gantrix.build_models(comp, spec)
    return trick, models


def batch_for(trick, models, spec, phase="generator", n=16):
    batch = Batch(real=torch.rand(n, *spec.shape) * 2 - 1, critic=models.discriminator,
                  phase=phase, step=0, z=torch.randn(n, spec.latent_dim))
    trick.gantrix_condition(batch=batch)
    fake = models.generator(batch.z, **batch.generator_inputs)
    batch.fake = fake.detach() if phase == "discriminator" else fake
    return batch


@pytest.mark.parametrize("spec, extra", [(VECTORS, ()), (IMAGES, ()), (IMAGES, ("dcgan",))])
def test_critic_returns_logits_and_q_on_the_shared_features(spec, extra):
    trick, models = built(spec, *extra)
    d, g = models.discriminator, models.generator
    x = g(torch.randn(5, spec.latent_dim))
    assert x.shape == (5, *spec.shape)
    out = d(x)
    assert out["logits"].shape == (5,)
    assert out["q_logits"].shape == (5, 10) and out["q_mean"].shape == (5, 2)
    net = d.wrapped.net
    features = net[:-1](x if spec.is_image else x.flatten(1))
    q = d.q(features).flatten(1)
    torch.testing.assert_close(out["q_logits"], q[:, :10])
    torch.testing.assert_close(out["q_mean"], q[:, 10:])
    torch.testing.assert_close(out["logits"], net[-1](features).flatten())
    # G takes [z, one-hot category, continuous codes]
    assert g.wrapped.net[0].weight.shape[1 if not spec.is_image else 0] == spec.latent_dim + 12


def test_codes_follow_their_priors_and_feed_the_generator():
    trick, models = built(VECTORS, categorical=5, continuous=3)
    batch = batch_for(trick, models, VECTORS, n=5000)
    cat, cont = batch.codes["categorical"], batch.codes["continuous"]
    assert cat.shape == (5000,) and 0 <= cat.min() and cat.max() == 4
    assert cont.shape == (5000, 3) and cont.min() >= -1 and cont.max() <= 1
    assert cont.mean().abs() < 0.03 and abs(cont.var().item() - 1 / 3) < 0.02
    expected = torch.cat([F.one_hot(cat, 5).float(), cont], 1)
    torch.testing.assert_close(batch.generator_inputs["codes"], expected)


def test_information_term_against_the_formula():
    trick, models = built(VECTORS, weight=0.7, continuous_weight=0.3)
    batch = batch_for(trick, models, VECTORS)
    terms = trick.gantrix_generator_terms(batch=batch)
    out = models.discriminator(batch.fake)
    c, mu = batch.codes["continuous"].double(), out["q_mean"].double()
    logp = torch.log_softmax(out["q_logits"].double(), 1)
    ce = -logp[torch.arange(16), batch.codes["categorical"]].mean()
    nll = (0.5 * (c - mu) ** 2 + 0.5 * math.log(2 * math.pi)).sum(1).mean()
    assert terms["infogan/categorical"].item() == pytest.approx(0.7 * ce.item(), rel=1e-5)
    assert terms["infogan/continuous"].item() == pytest.approx(0.3 * nll.item(), rel=1e-5)
    assert trick.gantrix_discriminator_terms(batch=batch).keys() == terms.keys()


def test_only_the_codes_asked_for():
    trick, models = built(VECTORS, categorical=0, continuous=2)
    batch = batch_for(trick, models, VECTORS)
    assert set(trick.gantrix_generator_terms(batch=batch)) == {"infogan/continuous"}
    assert batch.outputs("fake")["q_logits"].shape == (16, 0)
    trick, models = built(VECTORS, categorical=3, continuous=0)
    batch = batch_for(trick, models, VECTORS)
    assert set(trick.gantrix_generator_terms(batch=batch)) == {"infogan/categorical"}


def test_critic_step_trains_q_not_g_and_generator_step_trains_g():
    trick, models = built(VECTORS)
    batch = batch_for(trick, models, VECTORS, phase="discriminator")
    sum(trick.gantrix_discriminator_terms(batch=batch).values()).backward()
    assert all(p.grad is None for p in models.generator.parameters())
    assert all(p.grad is not None for p in models.discriminator.q.parameters())
    batch = batch_for(trick, models, VECTORS, phase="generator")
    sum(trick.gantrix_generator_terms(batch=batch).values()).backward()
    assert all(p.grad is not None for p in models.generator.parameters())


def test_g_and_q_learn_to_agree_on_the_codes():
    """Minimising the term alone, G must make its category visible in its samples and Q
    read it back: the cross-entropy falls from log K well below it."""
    trick = gantrix.make("infogan", categorical=4, continuous=0)
    models = Models(*(trick.gantrix_transform_model(model=cls(VECTORS, hidden=32), role=role,
                                                    spec=VECTORS)
                      for cls, role in ((VectorGenerator, "generator"),
                                        (VectorCritic, "discriminator"))))
    params = list(models.generator.parameters()) + list(models.discriminator.parameters())
    opt = torch.optim.Adam(params, lr=5e-3)
    for _ in range(80):
        terms = trick.gantrix_generator_terms(batch=batch_for(trick, models, VECTORS, n=32))
        opt.zero_grad()
        sum(terms.values()).backward()
        opt.step()
    assert terms["infogan/categorical"].item() < 0.5 * math.log(4)


@pytest.mark.parametrize("params, match", [({"categorical": 1}, "one-category"),
                                           ({"categorical": 0, "continuous": 0}, "no codes")])
def test_parameter_errors(params, match):
    with pytest.raises(ParamError, match=match):
        gantrix.make("infogan", **params)


class Flat(nn.Module):
    def __init__(self, inp, out):
        super().__init__()
        self.body = nn.Linear(inp, out)

    def forward(self, x):
        return self.body(x.flatten(1)).squeeze(1)


class OwnCodes(Flat):
    def forward(self, z, codes):
        return self.body(torch.cat([z, codes], 1))


def test_user_models_without_a_layer_stack_are_an_error():
    comp = gantrix.Recipe("nonsaturating", "infogan").compose()
    with pytest.raises(CompositionError, match="Q head") as err:
        gantrix.build_models(comp, VECTORS, discriminator=Flat(2, 1))
    assert [f.tricks for f in err.value.findings] == [("infogan",)]
    own = OwnCodes(8 + 12, 2)
    models = gantrix.build_models(gantrix.Recipe("nonsaturating", "infogan").compose(), VECTORS,
                                  generator=own)
    assert models.generator is own
