"""gantrix.kernels stands alone: it is the drop-in backend for other people's training loops, so
it imports nothing of the rest of gantrix (the penalties draw their interpolation weights with
gantrix.distributed and pass the draw in as a callable ``eps``).

The first tests import it in a fresh interpreter in which every other ``gantrix.*`` module is
blocked, and use every public op there, on both backends. The others pin the callable ``eps``:
the same numbers as the tensor it draws, drawn where the default draw is made (so a training
run's random stream, and its weights, are unchanged), trusted (nothing read back).
"""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from gantrix.kernels import gradient_penalty

SCRIPT = textwrap.dedent(r'''
    import importlib.abc
    import sys

    ALLOWED = ("gantrix", "gantrix.kernels")
    tried = []


    class BlockGantrix(importlib.abc.MetaPathFinder):
        """Refuse every gantrix module but the package itself and gantrix.kernels.*"""

        def find_spec(self, name, path=None, target=None):
            if name.startswith("gantrix.") and name not in ALLOWED \
                    and not name.startswith("gantrix.kernels."):
                tried.append(name)
                raise ModuleNotFoundError(f"blocked by the test: {name}", name=name)
            return None


    sys.meta_path.insert(0, BlockGantrix())

    import gantrix
    loaded = sorted(m for m in sys.modules if m.startswith("gantrix"))
    assert loaded == ["gantrix"], f"import gantrix pulled in {loaded}"

    import torch
    from gantrix.kernels import clip_, grad_norm_penalty, gradient_penalty, relativistic_loss

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # (Triton on CPU: its interpreter)
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Tanh(),
                                 torch.nn.Linear(8, 1)).to(device)
    real, fake = torch.randn(4, 3, 2, 2, device=device), torch.randn(4, 3, 2, 2, device=device)

    gp = gradient_penalty(critic, real, fake, weight=10.0)
    gp.backward()
    assert gp.dim() == 0 and torch.isfinite(gp), gp
    assert critic[1].weight.grad is not None and critic[3].weight.grad is not None

    drawn = gradient_penalty(critic, real, fake,
                             eps=lambda n, *, device, dtype: torch.rand(n, device=device, dtype=dtype))
    assert torch.isfinite(drawn), drawn

    g = torch.randn(4, 3, 2, 2, device=device, requires_grad=True)
    r1 = grad_norm_penalty(g, center=0.0, weight=5.0)
    r1.backward()
    assert torch.allclose(r1, 5.0 * g.detach().flatten(1).square().sum(1).mean()), r1

    d_real, d_fake = torch.randn(4, 1, device=device), torch.randn(4, 1, device=device)
    for kind in ("sgan", "lsgan", "hinge"):
        assert torch.isfinite(relativistic_loss(d_real, d_fake, kind=kind))

    weights = [torch.randn(5, 3, device=device) * 10, torch.randn(7, device=device) * 10]
    clip_(weights, 0.01)
    assert all(w.abs().max() <= 0.01 for w in weights)

    assert not tried, f"gantrix.kernels tried to import {tried}"
    others = sorted(m for m in sys.modules if m.startswith("gantrix.")
                    and not m.startswith("gantrix.kernels"))
    assert not others, f"loaded beside gantrix.kernels: {others}"
    print("standalone ok")
''')


def run_blocked(backend: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, GANTRIX_KERNELS=backend)
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_kernels_work_with_the_rest_of_gantrix_blocked(backend, request):
    if backend == "triton":
        request.getfixturevalue("needs_triton")
    done = run_blocked(backend)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "standalone ok" in done.stdout


def test_the_blocker_blocks():
    """The check above has teeth: the same finder stops an import of the core."""
    code = SCRIPT.split("import gantrix\n")[0] + textwrap.dedent('''
        try:
            import gantrix.distributed
        except ImportError:
            print("blocked", tried)
    ''')
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "blocked ['gantrix.distributed']" in done.stdout


# ---------------------------------------------------------------------- the callable eps

B = 4  # these run on the default backend: PyTorch on the CPU, Triton on CUDA


def critic_and_samples():
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 5), torch.nn.Softplus(),
                                 torch.nn.Linear(5, 1))
    return critic, torch.randn(B, 3, 2), torch.randn(B, 3, 2)


def penalty_and_grads(eps, **kwargs):
    critic, real, fake = critic_and_samples()
    gp = gradient_penalty(critic, real, fake, eps=eps, **kwargs)
    gp.backward()
    return gp.detach(), [p.grad for p in critic.parameters()]


def same(a, b):
    (pa, ga), (pb, gb) = a, b
    assert torch.equal(pa, pb)
    assert all((x is None and y is None) or torch.equal(x, y) for x, y in zip(ga, gb))


def test_a_callable_eps_gives_what_the_tensor_it_draws_gives():
    drawn = []

    def draw(n, *, device, dtype):
        drawn.append(torch.rand(n, device=device, dtype=dtype, generator=torch.Generator().manual_seed(7)))
        return drawn[-1]

    from_callable = penalty_and_grads(draw, weight=3.0, one_sided=True)
    assert len(drawn) == 1
    same(from_callable, penalty_and_grads(drawn[0].clone(), weight=3.0, one_sided=True))


def test_a_callable_eps_is_called_with_the_batch_device_and_dtype():
    calls = []

    def draw(n, **kw):
        calls.append((n, kw))
        return torch.rand(n, **kw)

    critic, real, fake = critic_and_samples()
    gradient_penalty(critic.double(), real.double(), fake.double(), eps=draw)
    assert calls == [(B, {"device": real.device, "dtype": torch.float64})]


def test_a_callable_eps_draws_where_the_default_draw_is_made():
    """torch.rand as the callable consumes the global stream exactly as eps=None does: after
    the checks, before the critic (which here draws random numbers itself, as dropout does)."""
    def noisy_critic(critic):
        return lambda x: critic(x + 0.01 * torch.rand_like(x))

    def run(eps):
        critic, real, fake = critic_and_samples()
        torch.manual_seed(123)
        gp = gradient_penalty(noisy_critic(critic), real, fake, eps=eps)
        gp.backward()
        return gp.detach(), [p.grad for p in critic.parameters()], torch.rand(3)

    (p1, g1, after1), (p2, g2, after2) = run(None), run(torch.rand)
    same((p1, g1), (p2, g2))
    assert torch.equal(after1, after2)


def test_a_callable_eps_is_not_called_when_the_arguments_are_refused():
    calls = []
    critic, real, fake = critic_and_samples()
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(critic, real, fake[:2], eps=lambda n, **kw: calls.append(n))
    assert not calls


@pytest.mark.parametrize("result,match", [
    (lambda n, kw: torch.rand(n + 1, **kw), rf"the eps callable's result must have shape \({B},\)"),
    (lambda n, kw: torch.rand(n, 1, **kw), rf"the eps callable's result must have shape \({B},\)"),
    (lambda n, kw: torch.ones(n, dtype=torch.long), "the eps callable's result must be a floating"),
    (lambda n, kw: [0.5] * n, "the eps callable's result must be a torch.Tensor"),
    (lambda n, kw: torch.rand(n, device="meta"), "the eps callable's result must be on"),
])
def test_a_callable_eps_with_a_wrong_layout_is_refused(result, match):
    critic, real, fake = critic_and_samples()
    with pytest.raises((ValueError, TypeError), match=match):
        gradient_penalty(critic, real, fake, eps=lambda n, **kw: result(n, kw))


def test_a_callable_eps_is_trusted_its_values_are_not_read_back(monkeypatch):
    """A tensor eps is checked to lie in [0, 1] (a read from the device); a drawn one is not."""
    reads = []
    item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda t: reads.append(t) or item(t))
    monkeypatch.setattr(torch.Tensor, "any", lambda t, *a, **k: reads.append(t) or True)
    critic, real, fake = critic_and_samples()
    gradient_penalty(critic, real, fake, eps=lambda n, **kw: torch.full((n,), 0.25, **kw))
    assert not reads
    with pytest.raises(ValueError, match=r"eps must lie in \[0, 1\]"):
        gradient_penalty(critic, real, fake, eps=torch.full((B,), 2.0))
    assert reads


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_callable_eps_adds_no_host_synchronisation_on_cuda():
    critic, real, fake = critic_and_samples()
    critic, real, fake = critic.cuda(), real.cuda(), fake.cuda()
    gradient_penalty(critic, real, fake, eps=torch.rand)  # warm up (first launches, autotune)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        gradient_penalty(critic, real, fake, eps=torch.rand).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
