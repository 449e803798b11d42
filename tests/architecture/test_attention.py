"""self-attention: the block against SAGAN's eqs. 1-3, where it lands in the core's and
dcgan's models, its errors, a short training run; the sngan and sagan recipes."""
import copy
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize
from typer.testing import CliRunner

import gantrix
from gantrix import CompositionError, ModelSpec, ParamError
from gantrix.cli.app import create_app
from gantrix.models import WIDENABLE, ConvCritic, ConvGenerator, find_layers
from gantrix.plugins.attention import SelfAttention
from gantrix.plugins.minibatch_stddev import MinibatchStdDev

ROLES = ("generator", "discriminator")


def reference(x, wf, wg, wh, wv, gamma):
    """Eqs. 1-3 position by position, in float64: s_ij = f(x_i)ᵀ g(x_j), β_j,i = softmax over
    i of s_ij, o_j = W_v Σ_i β_j,i h(x_i), y_j = γ o_j + x_j; x_i is column i of the map."""
    b, c, height, width = x.shape
    n = height * width
    y = torch.empty_like(x)
    for s in range(b):
        cols = x[s].reshape(c, n)
        f, g, h = wf @ cols, wg @ cols, wh @ cols
        out = torch.empty_like(cols)
        for j in range(n):
            scores = torch.stack([f[:, i] @ g[:, j] for i in range(n)])
            beta = scores.exp() / scores.exp().sum()
            o_j = wv @ sum(beta[i] * h[:, i] for i in range(n))
            out[:, j] = gamma * o_j + cols[:, j]
        y[s] = out.reshape(c, height, width)
    return y


@pytest.mark.parametrize("channels, k, size", [(16, 8, (4, 4)), (12, 4, (3, 5)), (4, 8, (2, 2))])
def test_block_matches_equations_1_to_3(channels, k, size):
    block = SelfAttention(channels, k).double()
    assert block.inner == max(channels // k, 1)
    with torch.no_grad():
        block.gamma.fill_(0.7)
    x = torch.randn(2, channels, *size, dtype=torch.float64)
    matrix = [conv.weight[:, :, 0, 0].detach() for conv in (block.f, block.g, block.h, block.v)]
    assert [tuple(m.shape) for m in matrix] == [(block.inner, channels)] * 3 + [(channels, block.inner)]
    torch.testing.assert_close(block(x), reference(x, *matrix, 0.7))


def test_block_starts_as_the_identity_and_trains_gamma_first():
    block = SelfAttention(16)
    convs = (block.f, block.g, block.h, block.v)
    x = torch.randn(3, 16, 4, 4)
    assert block.gamma.item() == 0 and all(c.bias is None for c in convs)
    assert torch.equal(block(x), x)
    block(x).square().sum().backward()
    # at γ = 0 only γ gets a gradient: the attention branch is multiplied by it
    assert block.gamma.grad.abs() > 0
    assert all(c.weight.grad is not None and c.weight.grad.abs().max() == 0 for c in convs)
    with torch.no_grad():
        block.gamma.fill_(0.5)
    block.zero_grad()
    block(x).square().sum().backward()
    assert block.gamma.grad.abs() > 0
    assert all(c.weight.grad.abs().max() > 0 for c in convs)


def core(spec):
    return {"generator": ConvGenerator(spec), "discriminator": ConvCritic(spec)}


def dcgan(spec):
    trick = gantrix.make("dcgan")
    return {role: trick.gantrix_build_model(role=role, spec=spec) for role in ROLES}


def example(role, spec, n=4):
    return torch.randn(n, spec.latent_dim) if role == "generator" else torch.randn(n, *spec.shape)


def output_sizes(model, x):
    """The (H, W) of each module of the layer stack's output on ``x``, and what the
    self-attention blocks get as input."""
    net = find_layers(model)
    sizes, seen = [None] * len(net), []
    hooks = [m.register_forward_hook(lambda m, a, out, i=i: sizes.__setitem__(i, tuple(out.shape[2:])))
             for i, m in enumerate(net)]
    hooks += [m.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape[1:])))
              for m in net if isinstance(m, SelfAttention)]
    model.eval()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return sizes, seen


SMALL = ModelSpec((1, 8, 8), latent_dim=8, width=8)
IMG32 = ModelSpec((3, 32, 32), latent_dim=8, width=4)
PLACEMENTS = [  # (models, spec, role, resolution; None: the default, half the side)
    (core, SMALL, "generator", None), (core, SMALL, "discriminator", None),
    (core, IMG32, "generator", None), (core, IMG32, "discriminator", None),
    (core, IMG32, "generator", 4), (core, IMG32, "discriminator", 8),
    (dcgan, SMALL, "generator", 8), (dcgan, SMALL, "discriminator", 8),
    (dcgan, SMALL, "discriminator", None),
    (dcgan, IMG32, "generator", 32), (dcgan, IMG32, "generator", None),
    (dcgan, IMG32, "discriminator", 32), (dcgan, IMG32, "discriminator", 4),
]


@pytest.mark.parametrize("build, spec, role, resolution", PLACEMENTS, ids=lambda v: getattr(
    v, "__name__", None) or (f"{v.shape[1]}px" if isinstance(v, ModelSpec) else str(v)))
def test_lands_at_the_end_of_the_stage_with_that_resolution(build, spec, role, resolution):
    model = build(spec)[role]
    side = resolution or spec.shape[1] // 2
    trick = gantrix.make("self-attention", resolution=resolution)
    assert trick.gantrix_transform_model(model=model, role=role, spec=spec) is model
    net = find_layers(model)
    (at,) = [i for i, m in enumerate(net) if isinstance(m, SelfAttention)]
    last_weight = max(i for i, m in enumerate(net) if isinstance(m, WIDENABLE))
    sizes, seen = output_sizes(model, example(role, spec))
    block = net[at]
    assert seen == [(block.channels, side, side)] and block.size == (side, side)
    assert sizes[at - 1] == (side, side)
    # the last layer of that stage: no later hidden layer makes side × side maps
    assert (side, side) not in sizes[at + 1:last_weight]
    assert at < last_weight
    (note,) = trick.gantrix_check_model(model=model, role=role)
    assert note.severity == "note" and f"'net.{at}'" in note.message
    assert f"{side}×{side} maps of {block.channels} channels" in note.message


@pytest.mark.parametrize("build", [core, dcgan])
def test_the_transformed_models_compute_what_they_did(build):
    """γ = 0: inserting the block leaves both models' outputs exactly as they were."""
    spec = IMG32
    for role, model in build(spec).items():
        before = copy.deepcopy(model)
        gantrix.make("self-attention").gantrix_transform_model(model=model, role=role, spec=spec)
        assert sum(isinstance(m, SelfAttention) for m in model.modules()) == 1
        x = example(role, spec)
        for m in (model, before):
            m.train()
        assert torch.equal(model(x), before(x))


def test_role_chooses_the_model_and_the_composition_checks_it():
    comp = gantrix.Recipe("hinge", "dcgan", "self-attention:resolution=8,role=generator").compose()
    models = gantrix.build_models(comp, SMALL)
    blocks = {role: [m for m in models.by_role(role).modules() if isinstance(m, SelfAttention)]
              for role in ROLES}
    assert len(blocks["generator"]) == 1 and blocks["generator"][0].size == (8, 8)
    assert blocks["discriminator"] == []
    notes = [f for f in comp.findings if "self-attention" in f.tricks]
    assert len(notes) == 1 and notes[0].message.startswith("generator: ")


def test_a_resolution_no_layer_has_is_an_error_naming_those_it_has():
    comp = gantrix.Recipe("hinge", "dcgan", "self-attention:resolution=16").compose()
    with pytest.raises(CompositionError) as caught:
        gantrix.build_models(comp, SMALL)
    errors = [f.message for f in caught.value.findings if f.severity == "error"]
    (g,) = [m for m in errors if "the generator (ConvGenerator)" in m]
    (d,) = [m for m in errors if "the discriminator (ConvCritic)" in m]
    assert "makes 16×16 feature maps (resolution=16); its hidden feature maps are 4×4, 8×8:" in g
    assert "makes 16×16 feature maps (resolution=16); its hidden feature maps are 8×8, 4×4:" in d


def test_the_output_layer_does_not_count():
    """The core's 8×8 G makes 8×8 maps only in its output layer, D only 1×1 in its last:
    neither is a place for the block, so only 4×4 is offered."""
    comp = gantrix.Recipe("hinge", "self-attention:resolution=8").compose()
    with pytest.raises(CompositionError) as caught:
        gantrix.build_models(comp, SMALL)
    errors = [f for f in caught.value.findings if f.severity == "error"]
    assert len(errors) == 2
    assert all("makes 8×8 feature maps (resolution=8); its hidden feature maps are 4×4:"
               in f.message and f.tricks == ("self-attention",) for f in errors)


class Plain(nn.Module):
    """A user's critic with a layer stack: its only hidden maps are 8×8."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 8))

    def forward(self, x):
        return self.net(x).flatten(1).squeeze(1)


class NeedsLabels(Plain):
    def forward(self, x, labels):
        return super().forward(x) + labels


@pytest.mark.parametrize("critic, message", [
    (Plain, "makes 4×4 feature maps (resolution=none: half the image side, 4); its hidden "
            "feature maps are 8×8:"),
    (NeedsLabels, "failed on a probe batch of shape (2, 1, 8, 8) alone"),
    (lambda: nn.Conv2d(1, 1, 8), "no `.net` layer stack"),
], ids=["no-such-size", "needs-labels", "no-stack"])
def test_a_critic_it_cannot_place_the_block_in_is_an_error(critic, message):
    comp = gantrix.Recipe("hinge", "self-attention").compose()
    with pytest.raises(CompositionError) as caught:
        gantrix.build_models(comp, SMALL, discriminator=critic())
    (error,) = [f for f in caught.value.findings if f.severity == "error"]
    assert error.tricks == ("self-attention",) and "the discriminator" in error.message
    assert message in error.message


def test_vector_data_is_refused():
    comp = gantrix.Recipe("hinge", "self-attention").compose()
    with pytest.raises(CompositionError) as caught:
        gantrix.build_models(comp, ModelSpec((2,), latent_dim=2, width=8))
    errors = [f for f in caught.value.findings if f.severity == "error"]
    assert [f.tricks for f in errors] == [("self-attention",)] * 2
    assert all("the data is vectors of shape (2,)" in f.message for f in errors)
    result = CliRunner().invoke(create_app(), ["check", "--data", "ring8", "hinge", "self-attention"])
    assert result.exit_code == 1
    assert "error: [self-attention] self-attention attends over the positions of image" in result.stdout
    assert "not runnable: 2 errors" in result.stdout


def test_bad_parameters_are_errors_naming_what_is_allowed():
    with pytest.raises(ParamError, match=r"parameter 'resolution' got 1; allowed: int in \[2, 1024\] or none"):
        gantrix.make("self-attention", resolution=1)
    with pytest.raises(ParamError, match="parameter 'role' got 'critic'; allowed: one of 'both'"):
        gantrix.make("self-attention", role="critic")
    result = CliRunner().invoke(create_app(), ["check", "self-attention:k=0"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("error: self-attention: parameter 'k' got 0; allowed: int in [1, 1024]")


def test_comes_before_minibatch_stddev_and_under_spectral_norm(run):
    spec = SMALL
    comp, models, out = run(("hinge", "dcgan:critic_norm=none", "self-attention", "minibatch-stddev",
                             "spectral-norm:role=both"), spec)
    net = find_layers(models.discriminator)
    # listed first, the block goes in first: the stddev feature stays right before the score
    assert [type(m) for m in net[-3:-1]] == [SelfAttention, MinibatchStdDev]
    assert isinstance(net[-1], nn.Conv2d)
    for model in (models.generator, models.discriminator):
        (block,) = [m for m in model.modules() if isinstance(m, SelfAttention)]
        assert all(parametrize.is_parametrized(c, "weight") for c in (block.f, block.g, block.h, block.v))
    assert not [f for f in comp.findings if f.severity != "note"]
    assert all(math.isfinite(v.item()) for v in out.values())


def test_trains_end_to_end_on_digits():
    trainer = gantrix.Trainer(["hinge", "self-attention:resolution=4"], "digits", steps=3,
                              batch_size=16, width=8, latent_dim=8, seed=0, sample_every=0,
                              progress=False).fit()
    assert trainer.step == 3
    (row,) = trainer.history
    assert {"d_loss", "g_loss"} <= set(row)
    assert all(math.isfinite(v) for v in row.values() if isinstance(v, float))
    for model in (trainer.models.generator, trainer.models.discriminator):
        (block,) = [m for m in model.modules() if isinstance(m, SelfAttention)]
        assert block.size == (4, 4) and block.gamma.item() != 0  # γ learned from 0
    assert trainer.sample(5).shape == (5, 1, 8, 8)
    # the same composition rebuilds the same structure: a checkpoint loads into it
    fresh = gantrix.build_models(trainer.composition, trainer.spec)
    fresh.generator.load_state_dict(trainer.models.generator.state_dict())
    fresh.discriminator.load_state_dict(trainer.models.discriminator.state_dict())


def _configs(name):
    return {t.name: t.config for t in gantrix.Recipe(recipe=name).compose().tricks}


def test_sngan_recipe_is_the_papers_hinge_setting():
    findings = gantrix.Recipe(recipe="sngan").check()
    assert not [f for f in findings if f.severity in ("error", "warning")], findings
    tricks = _configs("sngan")
    assert set(tricks) == {"resnet", "hinge", "spectral-norm", "n-critic", "adam"}
    assert tricks["resnet"]["layout"] == "sngan"  # the paper's CIFAR ResNet
    assert tricks["spectral-norm"]["role"] == "discriminator"
    assert tricks["n-critic"]["n"] == 5
    adam = tricks["adam"]
    assert (adam["lr"], adam["lr_g"], adam["lr_d"], adam["beta1"], adam["beta2"]) == (2e-4, None, None, 0.0, 0.9)
    assert gantrix.Recipe(recipe="sngan").train == {}  # the paper's 64 is the image default


def test_sagan_recipe_trains_with_its_optimizers_and_one_critic_step(run):
    findings = gantrix.Recipe(recipe="sagan").check()
    assert not [f for f in findings if f.severity in ("error", "warning")], findings
    tricks = _configs("sagan")
    assert set(tricks) == {"hinge", "spectral-norm", "self-attention", "ttur"}
    assert tricks["spectral-norm"]["role"] == "both" and tricks["self-attention"]["role"] == "both"
    assert tricks["ttur"] == {"lr_g": 1e-4, "lr_d": 4e-4, "beta1": 0.0, "beta2": 0.9}
    composition = gantrix.Recipe(recipe="sagan").compose()
    models = gantrix.build_models(composition, SMALL)
    step = gantrix.ComposedStep(composition, models, SMALL)
    assert composition.hook.gantrix_critic_steps(step=0) is None  # the core's one step
    groups = {role: step.optimizers[role].param_groups[0] for role in ROLES}
    assert (groups["generator"]["lr"], groups["discriminator"]["lr"]) == (1e-4, 4e-4)
    assert all(g["betas"] == (0.0, 0.9) for g in groups.values())
    for model in (models.generator, models.discriminator):
        (block,) = [m for m in model.modules() if isinstance(m, SelfAttention)]
        assert block.size == (4, 4) and parametrize.is_parametrized(block.v, "weight")


@pytest.mark.parametrize("name, fragments", [
    ("sngan", ["sngan  (recipe, from gantrix)", "spectral-norm:role=discriminator", "n-critic:n=5",
               "adam:lr=0.0002,beta1=0.0,beta2=0.9", "Spectral Normalization"]),
    ("sagan", ["sagan  (recipe, from gantrix)", "spectral-norm:role=both", "self-attention\n",
               "ttur:lr_g=0.0001,lr_d=0.0004,beta1=0.0,beta2=0.9", "Self-Attention Generative"]),
])
def test_recipe_info_pages(name, fragments):
    result = CliRunner().invoke(create_app(), ["info", "--recipe", name])
    assert result.exit_code == 0, result.output
    assert "\npaper: " in result.stdout and "\ntricks:\n" in result.stdout
    for fragment in fragments:
        assert fragment in result.stdout
    assert result.stdout.rstrip().endswith("ok: 0 errors, 0 warnings, 0 notes")


def test_trick_info_page_and_catalogue():
    assert gantrix.tricks()["self-attention"].kind == "architecture"
    result = CliRunner().invoke(create_app(), ["info", "self-attention"])
    assert result.exit_code == 0, result.output
    for fragment in ("self-attention  (architecture, from gantrix)", "resolution  int   none",
                     "half the image side", "in recipes: sagan"):
        assert fragment in result.stdout
