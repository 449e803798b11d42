"""Shared helpers for the architecture tricks' tests: seeding, small data, a short run."""
import pytest
import torch

import gantrix


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def data_source(spec: gantrix.ModelSpec, batch: int = 8):
    """A callable returning (samples in [-1, 1], labels or None) shaped for ``spec``."""
    def pull():
        x = torch.rand(batch, *spec.shape) * 2 - 1
        y = torch.randint(spec.num_classes, (batch,)) if spec.num_classes else None
        return x, y
    return pull


def run_steps(tricks, spec, steps: int = 2, batch: int = 8):
    """Compose ``tricks``, build the models, train ``steps`` steps; return
    (composition, models, last step's outputs)."""
    composition = gantrix.Recipe(*tricks).compose()
    models = gantrix.build_models(composition, spec)
    step = gantrix.ComposedStep(composition, models, spec)
    out = {}
    for _ in range(steps):
        out = step.step(data_source(spec, batch))
    return composition, models, out


@pytest.fixture
def run():
    return run_steps


@pytest.fixture
def data():
    return data_source
