"""conditional-batchnorm: the conditional norm against BatchNorm and against the formula
written out, the generator it makes of dcgan's, its compositions with the critics that take
the labels, its refusals, a short run on digits sampled by class, and the sngan-projection
recipe."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import gantrix
import gantrix.export
from gantrix import CompositionError, GantrixError, ModelSpec, ParamError
from gantrix.batch import Batch
from gantrix.check import check
from gantrix.cli.app import create_app
from gantrix.plugin import ConditionalCritic, draw_labels
from gantrix.plugins.conditional_batchnorm import (ConditionalBatchNorm,
                                                   ConditionalBatchNormGenerator)

SPEC = ModelSpec((1, 8, 8), num_classes=4, latent_dim=6, width=4)
K = 4
#: (BatchNorm kind, input shape): images, vectors, and sequences (BatchNorm1d over (B, C, L))
SHAPES = [(nn.BatchNorm2d, (6, 3, 4, 5)), (nn.BatchNorm1d, (6, 3)), (nn.BatchNorm1d, (6, 3, 7))]
IDS = ["2d", "1d", "1d-sequence"]
DIGITS = dict(batch_size=16, width=8, latent_dim=8, sample_every=0, log_every=1, progress=False)


def batchnorm(kind) -> nn.Module:
    """A float64 BatchNorm of 3 channels with its own eps and momentum, and a weight, bias
    and running statistics that are not the defaults."""
    bn = kind(3, eps=1e-3, momentum=0.3).double()
    with torch.no_grad():
        bn.weight.normal_(1.0, 0.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.num_batches_tracked.fill_(7)
    return bn


def written_out(x, gain, bias, mean, var, eps):
    """gain · (x − mean) / √(var + eps) + bias, with one (gain, bias) row per sample and
    one mean and var per channel, broadcast over the positions."""
    per_channel = (1, -1) + (1,) * (x.dim() - 2)
    per_sample = gain.shape + (1,) * (x.dim() - 2)
    xhat = (x - mean.reshape(per_channel)) / torch.sqrt(var.reshape(per_channel) + eps)
    return gain.reshape(per_sample) * xhat + bias.reshape(per_sample)


def batch_stats(x):
    dims = [0, *range(2, x.dim())]
    return x.mean(dims), x.var(dims, unbiased=False)


def models(*tricks, spec=SPEC):
    return gantrix.build_models(gantrix.Recipe("hinge", "dcgan", *tricks).compose(), spec)


def norms(model):
    return [m for m in model.modules() if isinstance(m, ConditionalBatchNorm)]


# --------------------------------------------------------------------------- the norm


@pytest.mark.parametrize("kind, shape", SHAPES, ids=IDS)
@pytest.mark.parametrize("shared", [False, True], ids=["per-class", "shared"])
def test_with_every_class_alike_it_is_the_batchnorm_it_replaced(kind, shape, shared):
    bn = batchnorm(kind)
    cbn = ConditionalBatchNorm(copy.deepcopy(bn), K, embed_dim=5 if shared else None)
    assert (type(cbn.norm), cbn.norm.eps, cbn.norm.momentum, cbn.norm.affine) == (kind, 1e-3, 0.3,
                                                                                 False)
    assert all(p.dtype == torch.float64 for p in cbn.parameters())
    # per class: labels; shared: any embedding e(y) (the projections start at 0)
    cbn.condition = torch.randn(shape[0], 5, dtype=torch.float64) if shared else \
        torch.tensor([0, 1, 2, 3, 1, 0])
    for training in (True, False):  # batch statistics (updating the running ones), then these
        bn.train(training)
        cbn.train(training)
        x = torch.randn(shape, dtype=torch.float64) * 2 + 1
        torch.testing.assert_close(cbn(x), bn(x))
        for key in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(cbn.norm, key), getattr(bn, key))


@pytest.mark.parametrize("kind, shape", SHAPES, ids=IDS)
def test_each_class_has_its_own_gain_and_bias(kind, shape):
    cbn = ConditionalBatchNorm(batchnorm(kind), K)
    with torch.no_grad():
        cbn.gain.weight.normal_(1.0, 0.5)
        cbn.bias.weight.normal_()
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    cbn.condition = labels
    x = torch.randn(shape, dtype=torch.float64) * 2 + 1
    gain, bias = cbn.gain.weight[labels], cbn.bias.weight[labels]
    torch.testing.assert_close(cbn(x), written_out(x, gain, bias, *batch_stats(x), 1e-3))
    cbn.eval()
    mean, var = cbn.norm.running_mean, cbn.norm.running_var
    torch.testing.assert_close(cbn(x), written_out(x, gain, bias, mean, var, 1e-3))
    # the same input as class 1 and as class 2: different outputs
    cbn.condition = torch.tensor([1, 2])
    out = cbn(x[:1].expand(2, *shape[1:]))
    assert not torch.allclose(out[0], out[1])


def test_the_shared_embedding_is_projected_to_each_layers_gain_and_bias():
    cbn = ConditionalBatchNorm(batchnorm(nn.BatchNorm2d), K, embed_dim=5)
    with torch.no_grad():
        cbn.gain_proj.normal_()
        cbn.bias_proj.normal_()
    e = torch.randn(6, 5, dtype=torch.float64)
    cbn.condition = e
    x = torch.randn(6, 3, 4, 4, dtype=torch.float64)
    gain = cbn.gain0 + e @ cbn.gain_proj.T
    bias = cbn.bias0 + e @ cbn.bias_proj.T
    torch.testing.assert_close(cbn(x), written_out(x, gain, bias, *batch_stats(x), 1e-3))


def test_a_batchnorm_without_affine_starts_at_gain_one_and_bias_zero():
    bn = nn.BatchNorm2d(3, affine=False).double()
    cbn = ConditionalBatchNorm(bn, K)
    assert torch.equal(cbn.gain.weight, torch.ones(K, 3, dtype=torch.float64))
    assert torch.equal(cbn.bias.weight, torch.zeros(K, 3, dtype=torch.float64))


def test_without_a_class_it_is_a_clear_error():
    cbn = ConditionalBatchNorm(nn.BatchNorm1d(3), K)
    with pytest.raises(GantrixError, match="no class came with the input: call the generator"):
        cbn(torch.randn(4, 3))


# --------------------------------------------------------------------------- the generator


def inputs_of(layer):
    return getattr(layer, "in_channels", getattr(layer, "in_features", None))


@pytest.mark.parametrize("builder", ["dcgan", "resnet"])
@pytest.mark.parametrize("shared", [False, True], ids=["per-class", "shared"])
def test_every_batchnorm_of_the_generator_is_conditioned(builder, shared):
    """dcgan's BatchNorms sit in G's layer stack, resnet's also inside its residual blocks."""
    torch.manual_seed(5)
    plain = gantrix.build_models(gantrix.Recipe("hinge", builder).compose(), SPEC).generator
    spec = "conditional-batchnorm:shared=true,embed_dim=16" if shared else "conditional-batchnorm"
    torch.manual_seed(5)  # G's weights as plain's
    g = gantrix.build_models(gantrix.Recipe("hinge", builder, spec, "projection").compose(),
                             SPEC).generator
    assert isinstance(g, ConditionalBatchNormGenerator)
    batchnorms = [m for m in plain.modules() if isinstance(m, nn.BatchNorm2d)]
    conditioned = norms(g)
    assert len(conditioned) == len(batchnorms) >= 2
    # every BatchNorm left is the normalisation inside a conditional one
    inside = {id(c.norm) for c in conditioned}
    assert all(id(m) in inside for m in g.modules() if isinstance(m, nn.BatchNorm2d))
    assert [(c.norm.num_features, c.norm.eps) for c in conditioned] == [
        (m.num_features, m.eps) for m in batchnorms]
    # projection left G as it was: no one-hot concatenated to z, its first layer not widened
    assert inputs_of(g.wrapped.net[0]) == inputs_of(plain.net[0]) == SPEC.latent_dim
    assert (g.embed is not None) == shared
    if shared:
        assert g.embed.weight.shape == (K, 16)
        assert conditioned[0].gain_proj.shape == (conditioned[0].norm.num_features, 16)
    # it starts as the unconditional generator: the same samples for the same z
    z = torch.randn(3, SPEC.latent_dim)
    for training in (True, False):
        g.train(training)
        plain.train(training)
        torch.testing.assert_close(g(z, labels=torch.tensor([0, 2, 3])), plain(z))


@pytest.mark.parametrize("shared", [False, True], ids=["per-class", "shared"])
def test_the_generator_starts_unconditional_and_hands_the_labels_to_its_norms(shared):
    g = models(f"conditional-batchnorm:shared={str(shared).lower()}", "projection").generator
    g.double()
    z = torch.randn(5, SPEC.latent_dim, dtype=torch.float64)
    for training in (True, False):
        g.train(training)
        torch.testing.assert_close(g(z, labels=torch.zeros(5, dtype=torch.long)),
                                   g(z, labels=torch.arange(5) % K))
    with torch.no_grad():
        for norm in norms(g):
            (norm.gain_proj if shared else norm.gain.weight).normal_()
    zeros = torch.zeros(5, dtype=torch.long)
    assert not torch.allclose(g(z, labels=zeros), g(z, labels=zeros + 1))
    assert all(norm.condition is None for norm in norms(g))  # only during a forward pass
    # without labels, G draws them uniformly from torch's stream
    torch.manual_seed(3)
    drawn = g(z)
    torch.manual_seed(3)
    torch.testing.assert_close(drawn, g(z, labels=draw_labels(K, 5)))
    with pytest.raises(GantrixError, match="no class came with the input"):
        g.wrapped(z)


def test_a_generator_that_takes_labels_itself_gets_them_too():
    class Labelled(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4))
            self.seen = None

        def forward(self, z, labels=None):
            self.seen = labels
            return self.net(z)

    composition = gantrix.Recipe("hinge", "conditional-batchnorm", "projection").compose()
    g = gantrix.build_models(composition, ModelSpec((4,), num_classes=K, latent_dim=6),
                             generator=Labelled()).generator
    g(torch.randn(3, 6), labels=torch.tensor([2, 0, 1]))
    assert torch.equal(g.wrapped.seen, torch.tensor([2, 0, 1]))


@pytest.mark.parametrize("critic_trick, critic_type", [("projection", "ProjectionCritic"),
                                                       ("acgan", "ClassifierCritic"),
                                                       ("cgan", "ConditionalCritic")])
def test_it_composes_with_each_way_of_giving_the_critic_the_labels(critic_trick, critic_type):
    plain = models()
    built = models("conditional-batchnorm", critic_trick)
    assert isinstance(built.generator, ConditionalBatchNormGenerator)
    assert built.generator.wrapped.net[0].in_channels == plain.generator.net[0].in_channels
    assert type(built.discriminator).__name__ == critic_type
    if critic_trick == "cgan":  # the class still enters D by concatenation: K more channels
        assert isinstance(built.discriminator, ConditionalCritic)
        first = built.discriminator.wrapped.net[0]
        assert first.in_channels == plain.discriminator.net[0].in_channels + K
    findings = gantrix.Recipe("hinge", "dcgan", "conditional-batchnorm", critic_trick).check()
    assert not [f for f in findings if f.severity in ("error", "warning")], findings


@pytest.mark.parametrize("order", ["cbn-first", "cbn-last"])
def test_the_fakes_classes_are_the_critic_tricks(order):
    tricks = ["conditional-batchnorm", "projection:fake_labels=real"]
    composition = gantrix.Recipe("hinge", "dcgan",
                                 *(tricks if order == "cbn-first" else tricks[::-1])).compose()
    built = gantrix.build_models(composition, SPEC)
    real = torch.tensor([3, 1, 2, 0, 3])

    def conditioned(fake_labels=None):
        batch = Batch(real=torch.zeros(5, *SPEC.shape), critic=built.discriminator,
                      phase="discriminator", step=0, labels=real)
        batch.fake_labels = fake_labels
        composition.hook.gantrix_condition(batch=batch)
        return batch

    batch = conditioned()  # projection's fake_labels=real, whatever the order of the tricks
    assert torch.equal(batch.fake_labels, real)
    assert batch.generator_inputs["labels"] is batch.fake_labels
    assert batch.critic_inputs["fake"]["labels"] is batch.fake_labels
    asked = torch.tensor([2, 2, 0, 1, 1])  # a sampler's classes are kept
    batch = conditioned(asked)
    assert batch.generator_inputs["labels"] is asked
    assert batch.critic_inputs["fake"]["labels"] is asked


def test_alone_it_draws_the_fakes_classes_uniformly():
    composition = gantrix.Recipe("hinge", "dcgan", "conditional-batchnorm").compose()
    gantrix.build_models(composition, SPEC)
    batch = Batch(real=torch.zeros(5, *SPEC.shape), critic=None, phase="generator", step=0)
    torch.manual_seed(4)
    composition.hook.gantrix_condition(batch=batch)
    torch.manual_seed(4)
    assert torch.equal(batch.generator_inputs["labels"], draw_labels(K, 5))
    assert batch.critic_inputs["fake"] == {}  # it gives the critic nothing


# --------------------------------------------------------------------------- relations


def test_registered_with_its_papers_and_relations():
    trick = gantrix.tricks()["conditional-batchnorm"]
    assert trick.kind == "architecture" and trick.plugin == "gantrix" and trick.samples()
    assert "Miyato & Koyama 2018" in trick.paper
    described = trick.describe()
    assert "de Vries et al. 2017" in described and "BigGAN" in described
    assert {p.name: p.default for p in trick.params} == {"shared": False, "embed_dim": 128}


def test_without_a_critic_that_sees_the_labels_it_is_a_warning():
    findings = gantrix.Recipe("hinge", "dcgan", "conditional-batchnorm").check()
    warnings = [f for f in findings if f.severity == "warning"]
    assert len(warnings) == 1 and warnings[0].tricks == ("conditional-batchnorm",)
    assert "the critic never sees it, so nothing ties samples to their class" in warnings[0].message
    assert "(add one of: acgan, cgan, projection)" in warnings[0].message


def test_selu_removing_the_batchnorms_is_an_error():
    errors = [f for f in gantrix.Recipe("hinge", "conditional-batchnorm", "projection",
                                        "selu").check() if f.severity == "error"]
    assert [set(f.tricks) for f in errors] == [{"conditional-batchnorm", "selu"}]


@pytest.mark.parametrize("args, fragments", [
    (["--data", "ring8"], ["[conditional-batchnorm]", "needs labelled data, but the data has "
                           "none", "or drop conditional-batchnorm"]),
    (["--data", "digits"], ["[conditional-batchnorm]", "but the generator (ConvGenerator) has "
                            "none: build one that has them (dcgan, resnet"]),
], ids=["unlabelled-data", "no-batchnorm-in-G"])
def test_refusals_are_findings_of_gantrix_check(args, fragments):
    # without dcgan: the core's generator (ring8: an MLP, digits: strided convs) has no BatchNorm
    result = CliRunner().invoke(create_app(), ["check", "hinge", "conditional-batchnorm",
                                               "projection", *args])
    assert result.exit_code == 1, result.output
    assert "not runnable" in result.stdout and "Traceback" not in result.output
    errors = [line for line in result.stdout.splitlines() if line.startswith("error: ")]
    cbn = [line for line in errors if line.startswith("error: [conditional-batchnorm]")]
    assert len(cbn) == 1
    for fragment in fragments:
        assert fragment in cbn[0]


def test_refusals_through_the_api():
    composition = gantrix.Recipe("hinge", "dcgan", "conditional-batchnorm").compose()
    with pytest.raises(CompositionError, match="needs labelled data") as err:
        gantrix.build_models(composition, ModelSpec((1, 8, 8), latent_dim=6, width=4))
    assert [f.tricks for f in err.value.findings if f.severity == "error"] == [
        ("conditional-batchnorm",)]
    lazy = nn.Sequential(nn.Linear(6, 4), nn.LazyBatchNorm1d())
    lazy.net = lazy  # a layer stack, as the core's models have
    with pytest.raises(CompositionError, match="cannot condition the generator's "
                                               "LazyBatchNorm1d"):
        gantrix.build_models(gantrix.Recipe("hinge", "conditional-batchnorm").compose(),
                             ModelSpec((4,), num_classes=K, latent_dim=6), generator=lazy)


def test_a_bad_parameter_is_a_clear_error():
    with pytest.raises(ParamError, match="only shared=true uses"):
        gantrix.make("conditional-batchnorm", embed_dim=16)
    result = CliRunner().invoke(create_app(), ["check", "hinge",
                                               "conditional-batchnorm:embed_dim=0"])
    assert result.exit_code == 2 and result.stdout == "" and "Traceback" not in result.output
    assert result.stderr.startswith("error: conditional-batchnorm: parameter 'embed_dim' got 0; "
                                    "allowed: int in [1, 4096]")


# --------------------------------------------------------------------------- runs


def test_with_projection_it_trains_on_digits_and_samples_the_classes_asked_for(tmp_path):
    run = tmp_path / "run"
    trainer = gantrix.Trainer(["hinge", "dcgan", "conditional-batchnorm", "projection",
                               "spectral-norm"], "digits", steps=3, out=run, **DIGITS)
    gains = [n.gain.weight.detach().clone() for n in norms(trainer.models.generator)]
    trainer.fit()
    assert trainer.step == 3 and all(np.isfinite(row["g_loss"]) for row in trainer.history)
    assert any(not torch.equal(a, n.gain.weight) for a, n in
               zip(gains, norms(trainer.models.generator)))
    assert trainer.conditional
    labels = torch.tensor([0, 3, 7, 9, 0, 3, 7, 9])
    x = trainer.sample(8, labels=labels)
    g = trainer.sampler
    g.eval()
    with torch.no_grad():
        z = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
        expected = g(z, labels=labels) * trainer.data.scale
    g.train()
    torch.testing.assert_close(x, expected)
    assert not torch.allclose(x, trainer.sample(8, labels=(labels + 1) % 10))
    # gantrix sample --labels and an exported generator (no trick plugin) sample the same
    runner, app = CliRunner(), create_app()
    npy = tmp_path / "s.npy"
    result = runner.invoke(app, ["sample", str(run), "--n", "3", "--labels", "2,5,7", "--seed",
                                 "4", "--out", str(npy)])
    assert result.exit_code == 0, result.output
    again = gantrix.Trainer.load(run)
    assert torch.equal(torch.from_numpy(np.load(npy)), again.sample(3, [2, 5, 7], seed=4))
    out = tmp_path / "g.safetensors"
    meta = gantrix.export.export(run, out)
    assert meta["conditional"] and meta["num_classes"] == 10
    exported = gantrix.load_generator(out)
    assert torch.equal(exported.sample(9, labels=[3, 1], seed=2), again.sample(9, [3, 1], seed=2))


def test_the_sngan_projection_recipe_is_the_papers_setup_and_checks_clean_on_digits():
    composition = gantrix.Recipe(recipe="sngan-projection").compose()
    tricks = {t.name: t.config for t in composition.tricks}
    assert {"conditional-batchnorm", "projection", "hinge", "spectral-norm", "n-critic", "adam",
            "lr-decay"} <= set(tricks)
    assert "cgan" not in tricks and "acgan" not in tricks
    assert tricks["spectral-norm"]["role"] == "discriminator" and tricks["n-critic"]["n"] == 5
    adam = tricks["adam"]
    assert (adam["lr"], adam["beta1"], adam["beta2"]) == (2e-4, 0.0, 0.9)
    assert tricks["lr-decay"]["to"] == 0.0
    assert tricks["resnet"]["layout"] == "sngan"  # the paper's models
    assert "Miyato & Koyama 2018" in gantrix.catalogue().recipes["sngan-projection"].data["paper"]
    report = check(gantrix.Recipe(recipe="sngan-projection"), "digits")
    assert report.ok and not [f for f in report.findings if f.severity == "warning"]
    assert "generator ConditionalBatchNormGenerator, critic ProjectionCritic" in report.models
    result = CliRunner().invoke(create_app(), ["recipes"])
    assert result.exit_code == 0 and "sngan-projection" in result.stdout
    assert not check(gantrix.Recipe(recipe="sngan-projection"), "ring8").ok
