"""clip_ on both backends, against torch.clamp on copies."""
import pytest
import torch
import torch.nn as nn

from gantrix.kernels import clip_


def check(tensors, c):
    want = [t.detach().clone().double().clamp(-c, c) for t in tensors]
    assert clip_(tensors, c) is None
    for t, w in zip(tensors, want):
        assert torch.equal(t.detach().double(), w.to(t.dtype).double())


def test_mixed_sizes(backend, device):
    sizes = [1, 5, 4095, 4096, 4097, 12_345, 33, 70_000]
    check([torch.randn(n, device=device) for n in sizes], 0.5)


def test_mixed_dtypes_and_shapes(backend, device):
    tensors = [torch.randn(3, 5, device=device), torch.randn(7, device=device).half(),
               torch.randn(2, 3, 4, 5, device=device).half(), torch.randn(9000, device=device)]
    check(tensors, 0.3)


def test_non_contiguous(backend, device):
    base = torch.randn(40, 30, device=device)
    tensors = [base.t(),  # dense, transposed: in place as it lies
               torch.randn(10, 20, device=device)[:, ::3],  # strided: through a copy
               torch.randn(2, 3, 8, 8, device=device).to(memory_format=torch.channels_last)]
    check(tensors, 0.1)
    assert base.abs().max() <= 0.1


def test_more_tensors_than_one_launch_takes(backend, device):
    torch.manual_seed(0)
    check([torch.randn(int(n), device=device) for n in torch.randint(1, 300, (131,))], 0.2)


def test_parameters_in_place_and_versions(backend, device):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(4, 2)).to(device)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(10)
    versions = [p._version for p in model.parameters()]
    clip_(model.parameters(), 0.01)
    for p, v in zip(model.parameters(), versions):
        assert p.abs().max() <= 0.01 and p.requires_grad and p._version > v


def test_nan_stays_nan_and_empty_input(backend, device):
    t = torch.tensor([float("nan"), 3.0, -3.0], device=device)
    clip_([t, torch.empty(0, device=device)], 1.0)
    assert t.isnan()[0] and t[1:].tolist() == [1.0, -1.0]
    assert clip_([], 1.0) is None


def test_single_tensor(backend, device):
    t = torch.randn(100, device=device) * 5
    clip_(t, 1.5)
    assert t.abs().max() <= 1.5


def test_views_of_one_flat_buffer_and_a_tensor_twice(backend, device):
    flat = torch.randn(20_000, device=device)
    views = [flat[:4096], flat[4096:4100], flat[4100:13_000].view(89, 100), flat[13_000:]]
    check(views + [views[1]], 0.25)  # (a tensor twice: clamped twice, the same)
    assert flat.abs().max() <= 0.25


def test_a_new_list_reuses_the_kernel_and_the_same_list_its_table(backend, device):
    from gantrix.kernels import clip as clip_mod  # (imports triton: the interpreter in CI)

    if backend != "triton":
        pytest.skip("the Triton path's table")
    before = clip_mod._table.cache_info()
    params = [torch.randn(int(n), device=device) for n in (10, 5000, 70, 4096)]
    clip_(params, 0.1)
    clip_(params, 0.1)
    after = clip_mod._table.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
