"""acgan and projection: critics that take the class without concatenating it, their terms
against the papers' formulas, the label routing, the relations and short runs on digits."""
from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

import gantrix
from gantrix import CompositionError, GantrixError, ModelSpec, ParamError
from gantrix.batch import Batch
from gantrix.check import check
from gantrix.cli.app import create_app
from gantrix.plugin import ConditionalGenerator

VECTORS = ModelSpec((3,), num_classes=4, latent_dim=5, width=8)
IMAGES = ModelSpec((1, 8, 8), num_classes=5, latent_dim=6, width=4)
DIGITS = dict(batch_size=16, width=8, latent_dim=8, sample_every=0, log_every=1, progress=False)
TRICKS = ("acgan", "projection")


def built(trick, spec, *extra):
    """(the configured trick, its models in float64) for ``nonsaturating`` + ``trick``."""
    composition = gantrix.Recipe("nonsaturating", trick, *extra).compose()
    models = gantrix.build_models(composition, spec)
    models.generator.double()
    models.discriminator.double()
    return composition.get(trick.partition(":")[0]), models


def penultimate(models, x):
    """φ(x) and ψ's weight and bias, read off the core's critic: its layers but the last."""
    net = models.discriminator.wrapped.net
    phi = net[:-1](x if x.dim() > 2 else x.flatten(1))
    return phi, net[-1].weight, net[-1].bias


def inner(phi, weight):
    """⟨w_k, φ_b⟩ for every sample b and row k: (B, K), the flattened inner products."""
    return phi.flatten(1) @ weight.flatten(1).T


def cross_entropy(logits, labels):
    """−mean_b log softmax(logits_b)[labels_b], written out."""
    picked = logits.gather(1, labels[:, None]).squeeze(1)
    return (torch.logsumexp(logits, 1) - picked).mean()


def batch_for(trick, models, spec, phase, labels, fake_labels):
    """A conditioned batch of float64 samples, as a composed update builds it."""
    n = len(labels)
    batch = Batch(real=torch.rand(n, *spec.shape, dtype=torch.float64) * 2 - 1,
                  critic=models.discriminator, phase=phase, step=0, labels=labels,
                  z=torch.randn(n, spec.latent_dim, dtype=torch.float64))
    batch.fake_labels = fake_labels
    trick.gantrix_condition(batch=batch)
    fake = models.generator(batch.z, **batch.generator_inputs)
    batch.fake = fake if phase == "generator" else fake.detach()
    return batch


# --------------------------------------------------------------------------- metadata


def test_both_are_registered_with_their_papers_and_needed_to_sample():
    tricks = gantrix.tricks()
    acgan, projection = tricks["acgan"], tricks["projection"]
    assert acgan.kind == projection.kind == "architecture"
    assert acgan.plugin == projection.plugin == "gantrix"
    assert "Odena" in acgan.paper and "eqs. 1-2" in acgan.paper
    assert "Miyato & Koyama" in projection.paper and "eq. 3" in projection.paper
    assert acgan.samples() and projection.samples()
    assert {"conditional", "critic-labels"} <= set(acgan.provides) & set(projection.provides)
    assert "critic-labels" in tricks["cgan"].provides
    weight = {p.name: p for p in acgan.params}["weight"]
    assert (weight.default, weight.allowed) == (1.0, "finite float in [0, 10000]")
    spectral = {p.name: p for p in projection.params}["spectral"]
    assert (spectral.default, spectral.allowed) == (False, "true or false")


# --------------------------------------------------------------------------- acgan


@pytest.mark.parametrize("spec", [VECTORS, IMAGES], ids=["vectors", "images"])
def test_acgan_critic_returns_the_logit_and_a_linear_classifier_on_phi(spec):
    _, models = built("acgan", spec)
    d = models.discriminator
    x = torch.rand(6, *spec.shape, dtype=torch.float64) * 2 - 1
    out = d(x)
    assert set(out) == {"logits", "class_logits"}
    assert out["class_logits"].shape == (6, spec.num_classes)
    phi, w, b = penultimate(models, x)
    # the adversarial logit is the critic's own: ψ(φ(x)) = ⟨w, φ⟩ + b
    torch.testing.assert_close(out["logits"], inner(phi, w)[:, 0] + b)
    # the auxiliary classifier: a linear layer on the flattened φ(x), K outputs
    head = d.classifier
    torch.testing.assert_close(out["class_logits"], inner(phi, head.weight) + head.bias)


def test_acgan_terms_are_the_papers_class_loss():
    trick, models = built("acgan:weight=0.5", VECTORS)
    real_y, fake_y = torch.tensor([0, 1, 2, 3, 3, 1]), torch.tensor([2, 2, 0, 1, 3, 0])
    batch = batch_for(trick, models, VECTORS, "discriminator", real_y, fake_y)
    terms = trick.gantrix_discriminator_terms(batch=batch)
    head = models.discriminator.classifier
    expected = {}
    for side, x, y in (("real", batch.real, real_y), ("fake", batch.fake, fake_y)):
        logits = inner(penultimate(models, x)[0], head.weight) + head.bias
        expected[f"acgan/{side}"] = 0.5 * cross_entropy(logits, y)
    assert terms.keys() == expected.keys()
    for name, value in expected.items():
        assert value.dtype == torch.float64
        torch.testing.assert_close(terms[name], value)
    # L_C = E[log P(C=c | X_real)] + E[log P(C=c | X_fake)]: the critic minimises both CEs,
    # the generator the fake one (the real one does not depend on G)
    batch = batch_for(trick, models, VECTORS, "generator", real_y, fake_y)
    g_terms = trick.gantrix_generator_terms(batch=batch)
    assert set(g_terms) == {"acgan/fake"}
    logits = inner(penultimate(models, batch.fake)[0], head.weight) + head.bias
    torch.testing.assert_close(g_terms["acgan/fake"], 0.5 * cross_entropy(logits, fake_y))


def test_acgan_gradients_reach_the_head_the_critic_and_the_generator():
    trick, models = built("acgan", IMAGES)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    batch = batch_for(trick, models, IMAGES, "discriminator", y, y.flip(0))
    sum(trick.gantrix_discriminator_terms(batch=batch).values()).backward()
    d = models.discriminator
    assert d.classifier.weight.grad.abs().sum() > 0 and d.classifier.bias.grad.abs().sum() > 0
    assert d.wrapped.net[0].weight.grad.abs().sum() > 0  # the shared body learns to classify
    assert all(p.grad is None for p in models.generator.parameters())
    d.zero_grad()
    batch = batch_for(trick, models, IMAGES, "generator", y, y.flip(0))
    sum(trick.gantrix_generator_terms(batch=batch).values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in models.generator.parameters())


def test_acgan_keeps_the_labels_from_the_critic():
    trick, models = built("acgan", VECTORS)
    y = torch.tensor([3, 0, 2])
    batch = batch_for(trick, models, VECTORS, "discriminator", y, None)
    assert batch.critic_inputs == {"real": {}, "fake": {}}
    assert batch.generator_inputs["labels"] is batch.fake_labels


# --------------------------------------------------------------------------- projection


@pytest.mark.parametrize("spec", [VECTORS, IMAGES], ids=["vectors", "images"])
def test_projection_critic_is_psi_of_phi_plus_the_class_embedding_product(spec):
    _, models = built("projection", spec)
    d = models.discriminator
    x = torch.rand(7, *spec.shape, dtype=torch.float64) * 2 - 1
    y = torch.arange(7) % spec.num_classes
    phi, w, b = penultimate(models, x)
    V = d.embed.weight  # (K, dim φ): row c is embed(c)
    assert V.flatten(1).shape == (spec.num_classes, phi.flatten(1).shape[1])
    onehot = F.one_hot(y, spec.num_classes).double()
    # eq. 3: f(x, y) = yᵀ V φ(x) + ψ(φ(x))
    expected = (onehot @ V.flatten(1) * phi.flatten(1)).sum(1) + phi.flatten(1) @ w.flatten() + b
    torch.testing.assert_close(d(x, labels=y), expected)
    # the label moves the logit by ⟨embed(y') − embed(y), φ(x)⟩
    other = (y + 1) % spec.num_classes
    shift = ((V.flatten(1)[other] - V.flatten(1)[y]) * phi.flatten(1)).sum(1)
    torch.testing.assert_close(d(x, labels=other) - d(x, labels=y), shift)


def test_projection_spectral_embedding_is_divided_by_its_largest_singular_value():
    _, models = built("projection:spectral=true", IMAGES)
    d = models.discriminator
    x = torch.rand(4, *IMAGES.shape, dtype=torch.float64) * 2 - 1
    for _ in range(100):  # power iteration, one step per training forward pass
        d(x, labels=torch.zeros(4, dtype=torch.long))
    d.eval()
    V = d.embed.parametrizations.weight.original.flatten(1)
    normalised = V / torch.linalg.matrix_norm(V, ord=2)
    y = torch.tensor([4, 1, 0, 2])
    phi, w, b = penultimate(models, x)
    expected = phi.flatten(1) @ w.flatten() + b + (normalised[y] * phi.flatten(1)).sum(1)
    torch.testing.assert_close(d(x, labels=y), expected, rtol=1e-6, atol=1e-6)


def test_projection_gradients_reach_the_used_embeddings_the_critic_and_the_generator():
    trick, models = built("projection", VECTORS)
    y = torch.tensor([1, 1, 3])
    batch = batch_for(trick, models, VECTORS, "discriminator", y, y)
    assert batch.critic_inputs == {"real": {"labels": y}, "fake": {"labels": y}}
    (batch.real_logits.sum() - batch.fake_logits.sum()).backward()
    d = models.discriminator
    grad = d.embed.weight.grad
    assert grad[[1, 3]].abs().sum(1).min() > 0 and grad[[0, 2]].abs().sum() == 0
    assert d.wrapped.net[0].weight.grad.abs().sum() > 0
    batch = batch_for(trick, models, VECTORS, "generator", y, y)
    batch.fake_logits.sum().backward()
    assert all(p.grad.abs().sum() > 0 for p in models.generator.parameters())


def test_projection_with_spectral_norm_trains_the_embedding_through_it():
    _, models = built("projection:spectral=true", VECTORS, "spectral-norm")
    d = models.discriminator
    original = d.embed.parametrizations.weight.original
    d(torch.randn(5, 3, dtype=torch.float64), labels=torch.tensor([0, 1, 2, 3, 0])).sum().backward()
    assert original.grad.abs().sum() > 0
    assert d.wrapped.net[0].parametrizations.weight.original.grad.abs().sum() > 0


# --------------------------------------------------------------------------- both


@pytest.mark.parametrize("name", TRICKS)
def test_the_generator_is_conditioned_as_cgan_conditions_it(name):
    _, models = built(name, VECTORS)
    g = models.generator
    assert isinstance(g, ConditionalGenerator)
    z, y = torch.randn(4, 5, dtype=torch.float64), torch.tensor([0, 3, 1, 3])
    expected = g.wrapped.net(torch.cat([z, F.one_hot(y, 4).double()], 1))
    torch.testing.assert_close(g(z, labels=y), expected)
    assert not torch.allclose(g(z, labels=y), g(z, labels=(y + 1) % 4))


@pytest.mark.parametrize("name", TRICKS)
def test_the_fakes_classes(name):
    trick, models = built(name, VECTORS)
    y = torch.zeros(4000, dtype=torch.long)
    batch = batch_for(trick, models, VECTORS, "discriminator", y, None)
    counts = torch.bincount(batch.fake_labels, minlength=4).double() / 4000
    assert (counts - 0.25).abs().max() < 0.03  # uniform by default, as in both papers
    trick, models = built(f"{name}:fake_labels=real", VECTORS)
    y = torch.tensor([2, 0, 1])
    assert batch_for(trick, models, VECTORS, "discriminator", y, None).fake_labels is y
    asked = torch.tensor([3, 3, 3])  # a sampler's classes are kept
    batch = batch_for(trick, models, VECTORS, "generator", y, asked)
    assert batch.fake_labels is asked and batch.generator_inputs["labels"] is asked


@pytest.mark.parametrize("first, second", [("acgan", "cgan"), ("projection", "cgan"),
                                           ("acgan", "projection")])
def test_one_way_of_giving_the_critic_labels(first, second):
    findings = gantrix.Recipe("nonsaturating", first, second).check()
    errors = [f for f in findings if f.severity == "error"]
    assert len(errors) == 1 and set(errors[0].tricks) == {first, second}
    message = errors[0].message
    assert "two ways of giving the critic the class labels" in message
    assert "Odena et al. 2017, eqs. 1-2" in message and "Miyato & Koyama 2018, eq. 3" in message
    assert "Fig. 1" in errors[0].paper
    with pytest.raises(CompositionError, match="keep one of them"):
        gantrix.Recipe("nonsaturating", first, second).compose()


@pytest.mark.parametrize("name", TRICKS)
def test_conditional_relations_of_other_tricks_apply(name):
    errors = [f for f in gantrix.Recipe("nonsaturating", name, "pac").check()
              if f.severity == "error"]
    assert [set(f.tricks) for f in errors] == [{"pac", name}]


def test_projection_on_a_sigmoid_output_is_an_error():
    findings = gantrix.Recipe("nonsaturating", "projection", "dcgan:output=sigmoid").check()
    errors = [f for f in findings if f.severity == "error" and "projection" in f.tricks]
    assert len(errors) == 1 and "added to the critic's logit" in errors[0].message


@pytest.mark.parametrize("name", TRICKS)
def test_unlabelled_data_is_an_error(name):
    composition = gantrix.Recipe("nonsaturating", name).compose()
    with pytest.raises(CompositionError, match="needs labelled data") as err:
        gantrix.build_models(composition, ModelSpec((2,), latent_dim=2))
    assert {f.tricks for f in err.value.findings if f.severity == "error"} == {(name,)}
    report = check(gantrix.Recipe("nonsaturating", name), "ring8")
    assert not report.ok and f"or drop {name}" in str(report.findings[0])
    # a loop of the user's own that hands over unlabelled batches
    composition = gantrix.Recipe("nonsaturating", name).compose()
    models = gantrix.build_models(composition, VECTORS)
    step = gantrix.ComposedStep(composition, models, VECTORS)
    with pytest.raises(GantrixError, match="labelled data"):
        step.step(lambda: (torch.randn(8, 3), None))


class Flat(nn.Module):
    """A critic without a `.net` layer stack."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(3, 1)

    def forward(self, x):
        return self.body(x).squeeze(1)


@pytest.mark.parametrize("name", TRICKS)
def test_a_critic_without_a_layer_stack_is_an_error_finding(name):
    composition = gantrix.Recipe("nonsaturating", name).compose()
    with pytest.raises(CompositionError, match="penultimate features") as err:
        gantrix.build_models(composition, VECTORS, discriminator=Flat())
    assert [f.tricks for f in err.value.findings] == [(name,)]


@pytest.mark.parametrize("name", TRICKS)
def test_a_critic_whose_last_layer_is_replaced_afterwards_is_a_clear_error(name):
    _, models = built(name, VECTORS)
    d = models.discriminator
    d.wrapped.net[-1] = nn.Linear(256, 1).double()  # the layer the head read is gone
    inputs = {"labels": torch.tensor([0, 1])} if name == "projection" else {}
    with pytest.raises(GantrixError, match=f"{name}: .* did not run: a trick replaced it"):
        d(torch.randn(2, 3, dtype=torch.float64), **inputs)


@pytest.mark.parametrize("name", TRICKS)
def test_drawing_classes_before_the_models_are_built_is_a_clear_error(name):
    batch = Batch(real=torch.randn(4, 3), critic=None, phase="discriminator", step=0)
    with pytest.raises(GantrixError, match="build the models with gantrix.build_models"):
        gantrix.make(name).gantrix_condition(batch=batch)


@pytest.mark.parametrize("spec, match", [
    ("acgan:weight=-1", "acgan: parameter 'weight' got -1.0; allowed: finite float in [0, 10000]"),
    ("projection:spectral=maybe", "projection: parameter 'spectral' got 'maybe'"),
    ("acgan:fake_labels=real-ish", "allowed: one of 'uniform', 'real'"),
])
def test_a_bad_parameter_is_a_clear_error(spec, match):
    with pytest.raises(ParamError, match=re.escape(match)):
        gantrix.Recipe("nonsaturating", spec).compose()
    result = CliRunner().invoke(create_app(), ["check", "nonsaturating", spec])
    assert result.exit_code == 2 and match in result.stderr


# --------------------------------------------------------------------------- runs


def labels_asked():
    return torch.tensor([0, 3, 7, 9, 0, 3, 7, 9])


@pytest.mark.parametrize("recipe, terms", [
    ("acgan", {"d/acgan/real", "d/acgan/fake", "g/acgan/fake"}),
    (["hinge", "projection:spectral=true", "spectral-norm"], set()),
], ids=["acgan-recipe", "projection"])
def test_a_short_run_on_digits_samples_the_classes_asked_for(recipe, terms):
    trainer = gantrix.Trainer(recipe, "digits", steps=3, **DIGITS)
    before = [p.detach().clone() for p in trainer.models.discriminator.parameters()]
    trainer.fit()
    assert trainer.step == 3 and len(trainer.history) == 3
    for row in trainer.history:
        assert terms <= set(row)
        assert all(math.isfinite(row[k]) for k in ("d_loss", "g_loss", *terms))
    after = list(trainer.models.discriminator.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    # Trainer.sample(n, labels=...) is G(z, labels) for its seeded z, in eval mode
    y = labels_asked()
    x = trainer.sample(8, labels=y)
    g = trainer.sampler
    g.eval()
    with torch.no_grad():
        z = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
        expected = g(z, labels=y) * trainer.data.scale
    g.train()
    assert x.shape == (8, 1, 8, 8)
    torch.testing.assert_close(x, expected)
    assert not torch.allclose(x, trainer.sample(8, labels=(y + 1) % 10))


def test_the_acgan_recipe_is_the_papers_setup_and_checks_clean_on_digits():
    composition = gantrix.Recipe(recipe="acgan").compose()
    tricks = {t.name: t.config for t in composition.tricks}
    assert set(tricks) == {"acgan", "dcgan", "nonsaturating", "adam"}
    adam = tricks["adam"]
    assert (adam["lr"], adam["beta1"], adam["beta2"]) == (2e-4, 0.5, 0.999)
    assert tricks["acgan"]["weight"] == 1.0
    assert gantrix.Recipe(recipe="acgan").train["batch_size"] == 100
    report = check(gantrix.Recipe(recipe="acgan"), "digits")
    assert report.ok and not [f for f in report.findings if f.severity == "warning"]
    assert "critic ClassifierCritic" in report.models


def test_gantrix_info_shows_the_acgan_recipe_and_trick():
    runner, app = CliRunner(), create_app()
    result = runner.invoke(app, ["info", "--recipe", "acgan"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("acgan  (recipe, from gantrix)\nAC-GAN")
    assert "paper: Odena, Olah & Shlens 2017" in out
    assert "tricks:\n  acgan\n  dcgan\n  nonsaturating\n  adam:" in out
    assert "train:\n  batch_size = 100" in out
    assert "composed:" in out and "ok: 0 errors, 0 warnings" in out
    result = runner.invoke(app, ["info", "acgan"])
    out = result.stdout
    assert result.exit_code == 0 and out.startswith("acgan  (architecture, from gantrix)")
    assert "L_C = E[log P(C = c | X_real)] + E[log P(C = c | X_fake)]" in out
    assert "critic-labels [error]" in out and "provides: conditional, critic-labels" in out
    assert "in recipes: acgan" in out and "Needed to sample: yes" in out
    out = runner.invoke(app, ["info", "projection"]).stdout
    assert "f(x, y) = yᵀVφ(x) + ψ(φ(x))" in out and "sigmoid-output [error]" in out
    assert "spectral" in out.split("parameters:")[1] and "Needed to sample: yes" in out
