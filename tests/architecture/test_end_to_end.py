"""Every architecture trick composed through the core: build, a few training steps, sample."""
import copy

import pytest
import torch

import gantrix
from gantrix import ModelSpec

VEC = ModelSpec((2,), latent_dim=8, width=8)
VEC_LABELLED = ModelSpec((2,), num_classes=8, latent_dim=8, width=8)
IMG = ModelSpec((1, 8, 8), latent_dim=8, width=8)
IMG_LABELLED = ModelSpec((1, 8, 8), num_classes=10, latent_dim=8, width=8)
IMG16 = ModelSpec((3, 16, 16), num_classes=10, latent_dim=8, width=8)

CASES = [
    (("nonsaturating", "cgan"), VEC_LABELLED),
    (("nonsaturating", "cgan"), IMG_LABELLED),
    (("nonsaturating", "dcgan", "cgan:embedding=learned,fake_labels=uniform"), IMG16),
    (("nonsaturating", "infogan"), VEC),
    (("nonsaturating", "dcgan", "infogan:categorical=4,continuous=1"), IMG),
    (("wgan", "selu"), VEC),
    (("nonsaturating", "dcgan:critic_norm=none", "selu"), IMG),
    (("hinge", "spectral-norm"), VEC),
    (("hinge", "dcgan:critic_norm=none", "spectral-norm:role=both"), IMG16),
    (("nonsaturating", "minibatch-stddev:group=2"), VEC),
    (("nonsaturating", "dcgan", "minibatch-stddev"), IMG),
    (("nonsaturating", "dcgan"), IMG),
    (("nonsaturating", "dcgan"), IMG16),
    (("nonsaturating", "smaller-generator:ratio=10"), VEC),
    (("wgan", "gradient-penalty", "dcgan:critic_norm=layer", "cgan"), IMG_LABELLED),
    (("hinge", "dcgan:critic_norm=none", "cgan", "infogan", "minibatch-stddev", "spectral-norm",
      "smaller-generator:ratio=10"), IMG16),
]


def _ids(case):
    if isinstance(case, tuple):
        return "+".join(case)
    return "x".join(map(str, case.shape)) + ("-labelled" if case.num_classes else "")


@pytest.mark.parametrize("tricks, spec", CASES, ids=_ids)
def test_composes_builds_trains_and_samples(data, tricks, spec):
    names = {t.split(":")[0] for t in tricks}
    composition = gantrix.Recipe(*tricks).compose()
    models = gantrix.build_models(composition, spec)
    before = copy.deepcopy(models)
    step = gantrix.ComposedStep(composition, models, spec)
    for _ in range(3):
        out = step.step(data(spec))
    assert out and all(torch.isfinite(v) for v in out.values())
    for old, new in ((before.generator, models.generator),
                     (before.discriminator, models.discriminator)):
        assert any(not torch.equal(a, b) for a, b in zip(old.parameters(), new.parameters()))
    if "dcgan" in names and "selu" not in names:  # dcgan's rules hold after every transform
        assert not [f for f in composition.findings if "dcgan" in f.tricks]
    z = torch.randn(5, spec.latent_dim)
    models.generator.eval()
    with torch.no_grad():
        assert models.generator(z).shape == (5, *spec.shape)
        if "cgan" in names:
            assert models.generator(z, labels=torch.arange(5)).shape == (5, *spec.shape)
