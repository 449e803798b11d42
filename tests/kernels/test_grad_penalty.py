"""grad_norm_penalty and gradient_penalty on both backends, against float64 formulas written here."""
import pytest
import torch
import torch.nn as nn

from gantrix.kernels import grad_norm_penalty, gradient_penalty


def penalty64(g, center=1.0, weight=10.0, one_sided=False):
    """weight · mean_b (‖g_b‖ − c)², in float64, by autograd (vector_norm's subgradient is 0 at 0)."""
    norms = torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1)
    dist = norms - center
    if one_sided:
        dist = dist.clamp(min=0)
    return weight * (dist ** 2).mean()


def check_penalty(g, *, scale=1.0, ran_on=None, **kw):
    """Loss and input gradient of grad_norm_penalty(g) against penalty64 of the same values."""
    x = g.detach().clone().requires_grad_(True)
    loss = grad_norm_penalty(x, **kw)
    if ran_on is not None:
        ran_on(loss, "grad_penalty")
    (loss * scale).backward()
    x64 = g.detach().double().requires_grad_(True)
    ref = penalty64(x64, **kw)
    (ref * scale).backward()
    assert loss.dtype == torch.float32 and loss.shape == ()
    # float32 sums of half a million squares (the PyTorch path's vector_norm, blocked by thread)
    # err by up to ~5e-6 relative, doubled in the squared distance: seen at 1.08e-5, once in three
    rtol = 1e-5 if g[0].numel() < 100_000 else 5e-5
    torch.testing.assert_close(loss.double(), ref, rtol=rtol, atol=1e-6)
    assert x.grad.shape == g.shape and x.grad.dtype == g.dtype
    assert not x.grad.isnan().any()
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-4, atol=1e-6)
    return x.grad


# odd sizes; rows longer than a block; one value per sample; a batch longer than the
# kernel's batch tile; more pieces per row than the reduction tile (3·420·420 > 64·8192)
@pytest.mark.parametrize("shape", [(4, 3, 5, 7), (3, 3, 61, 59), (6,), (1, 2, 9), (65, 17), (2, 3, 420, 420)])
def test_penalty_matches_float64(backend, device, ran_on, shape):
    g = torch.randn(shape, device=device) * 0.1
    check_penalty(g, scale=3.7, ran_on=ran_on)


# small samples (≤ 64 elements) are read by one launch unless the batch is large: 2-D points,
# a batch slice of them (rows apart in memory), 8×8 digits, and too many digits for one launch
@pytest.mark.parametrize("shape,one_sided", [((300, 2), False), ((12, 5), True), ((9, 1, 8, 8), True),
                                             ((513, 64), False)])
def test_small_samples(backend, device, shape, one_sided):
    g = torch.randn(shape, device=device) * 0.15
    check_penalty(g[::2] if shape == (12, 5) else g, scale=0.3, center=0.5, one_sided=one_sided)


@pytest.mark.parametrize("center,one_sided", [(0.0, False), (1.0, True), (0.5, False)])
def test_penalty_variants(backend, device, center, one_sided):
    g = torch.randn(5, 2, 11, 13, device=device) * 0.07  # norms on both sides of 1
    check_penalty(g, center=center, weight=2.5, one_sided=one_sided)


@pytest.mark.parametrize("center", [1.0, 0.0])
def test_zero_gradient_sample_gives_zero_grad_not_nan(backend, device, center):
    g = torch.randn(4, 3, 8, 8, device=device)
    g[2] = 0
    grad = check_penalty(g, center=center)
    assert torch.all(grad[2] == 0)


def test_non_contiguous_inputs(backend, device):
    base = torch.randn(6, 3, 10, 12, device=device)
    check_penalty(base.to(memory_format=torch.channels_last))  # dense rows, other order
    check_penalty(base[::2])  # rows apart in memory
    check_penalty(base[:, :, ::2])  # gaps inside a row: copied
    check_penalty(torch.randn(40, 7, device=device).t())  # transposed matrix


def test_channels_last_gradient_keeps_layout(backend, device):
    x = torch.randn(3, 4, 5, 6, device=device).to(memory_format=torch.channels_last).requires_grad_(True)
    grad_norm_penalty(x).backward()
    assert x.grad.is_contiguous(memory_format=torch.channels_last)


def test_float16_gradient(backend, device):
    g = (torch.randn(4, 3, 9, 9, device=device) * 0.05).half()
    x = g.clone().requires_grad_(True)
    loss = grad_norm_penalty(x)
    loss.backward()
    x64 = g.double().requires_grad_(True)
    ref = penalty64(x64)
    ref.backward()
    assert loss.dtype == torch.float32 and x.grad.dtype == torch.float16
    torch.testing.assert_close(loss.double(), ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=2e-3, atol=1e-4)


class Critic(nn.Module):
    """A small conv critic, optionally conditioned on a label (cGAN)."""

    def __init__(self, classes=0):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2)
        self.head = nn.Linear(4 * 4 * 4, 1)
        self.embed = nn.Embedding(classes, 4 * 4 * 4) if classes else None

    def forward(self, x, labels=None):
        h = torch.tanh(self.conv2(torch.nn.functional.leaky_relu(self.conv1(x), 0.2))).flatten(1)
        if self.embed is not None:
            h = h * self.embed(labels)
        return self.head(h)


def gp64(critic64, real, fake, eps, **kw):
    """The WGAN-GP penalty in float64 with plain autograd, as a reference."""
    x_hat = (eps.view(-1, 1, 1, 1) * real + (1 - eps.view(-1, 1, 1, 1)) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(critic64(x_hat, **kw).sum(), x_hat, create_graph=True)
    return 10.0 * ((g.flatten(1).pow(2).sum(1).sqrt() - 1) ** 2).mean()


@pytest.mark.parametrize("classes", [0, 5])
def test_gradient_penalty_reaches_critic_weights(backend, device, classes, no_tf32):
    """Conv-critic gradients against float64 at rtol 1e-3: TF32 off (``no_tf32``), else cuDNN's
    TF32 convolutions on a GPU would fail it for a reason that is not the kernel's."""
    torch.manual_seed(0)
    critic = Critic(classes).to(device)
    critic64 = Critic(classes).to(device).double()
    critic64.load_state_dict(critic.state_dict())
    real, fake = torch.randn(2, 6, 3, 9, 9, device=device)
    eps = torch.rand(6, device=device)
    kw = {"labels": torch.randint(0, classes, (6,), device=device)} if classes else {}
    loss = gradient_penalty(critic, real, fake, eps=eps, critic_kwargs=kw)
    (loss * 3.7).backward()
    ref = gp64(critic64, real.double(), fake.double(), eps.double(), **kw)
    (ref * 3.7).backward()
    torch.testing.assert_close(loss.double(), ref, rtol=1e-4, atol=1e-6)
    assert critic.conv1.weight.grad is not None and critic.head.weight.grad is not None
    for (name, p), p64 in zip(critic.named_parameters(), critic64.parameters()):
        if p64.grad is None:  # the last bias does not change the input gradient
            assert p.grad is None, name
        else:
            torch.testing.assert_close(p.grad.double(), p64.grad, rtol=1e-3, atol=1e-6, msg=name)


def test_no_tf32_turns_tf32_off_and_restores_it(no_tf32):
    from gantrix.precision import ieee_fp32, tf32_state

    assert tf32_state() == {"cudnn.allow_tf32": False, "cuda.matmul.allow_tf32": False}
    torch.backends.cudnn.allow_tf32 = True
    with ieee_fp32():
        assert not any(tf32_state().values())
    assert tf32_state() == {"cudnn.allow_tf32": True, "cuda.matmul.allow_tf32": False}
    torch.backends.cudnn.allow_tf32 = False  # (the fixture restores what was there before)


def test_gradient_penalty_draws_one_eps_per_sample(backend, device):
    seen = []

    def critic(x):
        seen.append(x.detach())
        return (x ** 2).sum(dim=(1, 2))

    real, fake = torch.randn(2, 16, 3, 5, device=device)
    gradient_penalty(critic, real, fake)
    t = (seen[0] - fake) / (real - fake)  # x̂ = fake + eps·(real − fake)
    eps = t[:, 0, 0]
    torch.testing.assert_close(t, eps.view(-1, 1, 1).expand_as(t), rtol=1e-4, atol=1e-4)
    assert torch.all((eps >= 0) & (eps <= 1)) and eps.unique().numel() > 1


def test_gradient_penalty_detaches_inputs_and_works_under_no_grad(backend, device):
    critic = nn.Linear(4, 1).to(device)
    gen = nn.Linear(4, 4).to(device)
    real = torch.randn(3, 4, device=device)
    fake = gen(torch.randn(3, 4, device=device))
    with torch.no_grad():
        loss = gradient_penalty(critic, real, fake)
    loss.backward()
    assert critic.weight.grad is not None and gen.weight.grad is None


def test_grad_scale_as_the_scalers_device_tensor(backend, device):
    """fp16's loss scale may come as the scaler's 0-d tensor (not read back): same penalty."""
    torch.manual_seed(0)
    critic = nn.Linear(6, 1).to(device)
    real, fake = torch.randn(2, 4, 6, device=device)
    eps = torch.rand(4, device=device)
    as_float = gradient_penalty(critic, real, fake, eps=eps, grad_scale=1024.0)
    as_tensor = gradient_penalty(critic, real, fake, eps=eps, grad_scale=torch.tensor(1024.0, device=device))
    torch.testing.assert_close(as_tensor, as_float, rtol=0, atol=0)
