"""examples/wgan_gp_loop.py runs end to end (a few steps) with the kernels as its penalty."""
import importlib.util
import math
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "wgan_gp_loop.py"


def test_wgan_gp_example_runs(capsys):
    spec = importlib.util.spec_from_file_location("wgan_gp_loop", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(steps=3, batch=32, n_critic=2)
    assert all(math.isfinite(result[k]) for k in ("wasserstein", "loss_d", "loss_g"))
    assert "modes covered" in capsys.readouterr().out
