"""Fixtures for the kernel tests: every op is tested on both backends.

``backend`` forces ``GANTRIX_KERNELS`` to ``torch`` or ``triton``. Without a GPU the Triton
case runs the real kernels on CPU tensors through Triton's interpreter (tests/conftest.py
switches it on); ``device`` is CUDA when there is one, else the CPU.
"""
import pytest
import torch

from gantrix.kernels import dispatch

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def triton_runs() -> bool:
    return dispatch.triton_installed() and (DEVICE.type == "cuda" or dispatch.interpreting())


@pytest.fixture(params=["torch", "triton"])
def backend(request, monkeypatch):
    if request.param == "triton" and not triton_runs():
        pytest.skip("Triton cannot run here: no CUDA device and its interpreter is off")
    monkeypatch.setenv("GANTRIX_KERNELS", request.param)
    return request.param


@pytest.fixture
def device():
    return DEVICE


@pytest.fixture
def needs_triton():
    if not triton_runs():
        pytest.skip("Triton cannot run here: no CUDA device and its interpreter is off")


@pytest.fixture
def ran_on(backend):
    """``ran_on(loss, op_module)`` asserts that ``loss`` came from the backend under test: the
    Triton Function of ``op_module``, or on the PyTorch path the reference's Function or plain
    autograd ops (small relativistic losses)."""
    def check(loss: torch.Tensor, op_module: str) -> None:
        forward_cls = getattr(loss.grad_fn, "_forward_cls", None)
        module = forward_cls.__module__ if forward_cls is not None else None
        if backend == "triton":
            assert module == f"gantrix.kernels.{op_module}"
        else:
            assert module in ("gantrix.kernels.reference", None)
    return check


@pytest.fixture
def no_tf32():
    """TF32 off (cuDNN convolutions and matrix products) for the test, restored after: on an
    H100 cuDNN runs float32 convolutions in TF32 by default (a 10-bit mantissa, relative errors
    near 1e-3), which a comparison with float64 at float32 tolerances would take for a kernel
    bug."""
    from gantrix.precision import ieee_fp32

    with ieee_fp32():
        yield
