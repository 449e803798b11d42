"""``--compile``: which models a composition lets torch.compile compile, the refusals and
their reasons, and compiled training on the CPU (inductor's C++), which matches eager
training to rounding and leaves the models, their checkpoints and their copies plain."""
from __future__ import annotations

import pytest
import torch
from gantrix import Param, Regularizer
from gantrix.compiling import CompileFailed, announcement, compiled_roles, eager_roles, failure, findings, missing_backend
from gantrix.compose import Composition
from gantrix.errors import CompositionError
from gantrix.recipe import Recipe
from gantrix.trainer import Trainer

SMALL = dict(batch_size=32, latent_dim=2, width=16, sample_every=0, checkpoint_every=0,
             log_every=3, steps=3, threads=1)
HAS_CXX = missing_backend("cpu") is None
needs_cxx = pytest.mark.skipif(not HAS_CXX, reason="torch.compile on the CPU needs a C++ compiler")


class GeneratorTwice(Regularizer):
    """A (pretend) path-length term: says it differentiates the generator twice."""

    name = "generator-twice"
    summary = "declares a double backward through G"
    differentiates_twice = ("generator",)


class SilentPenalty(Regularizer):
    """An input-gradient penalty on the critic that does not declare it (a plugin's bug)."""

    name = "silent-penalty"
    summary = "a gradient penalty without differentiates_twice"
    params = (Param("weight", float, 1.0, "its weight", low=0.0, high=10.0),)

    def d_term(self, batch):
        return self.weight * batch.input_grad("real").pow(2).sum(1).mean()


@pytest.fixture(autouse=True)
def local_tricks(add_tricks):
    add_tricks(GeneratorTwice, SilentPenalty)


def composition(*tricks: str) -> Composition:
    return Composition(Recipe(*tricks))


@pytest.mark.parametrize("tricks, compiled, eager", [
    (["nonsaturating"], ["generator", "discriminator"], {}),
    (["dcgan", "nonsaturating"], ["generator", "discriminator"], {}),
    (["wgan", "gradient-penalty"], ["generator"], {"discriminator": ["gradient-penalty"]}),
    (["nonsaturating", "r1", "r2"], ["generator"], {"discriminator": ["r1", "r2"]}),
    (["nonsaturating", "dragan"], ["generator"], {"discriminator": ["dragan"]}),
    (["nonsaturating", "unrolled"], ["generator", "discriminator"], {}),  # first order
    (["nonsaturating", "unrolled:differentiate=true"], ["generator"],
     {"discriminator": ["unrolled"]}),
    (["nonsaturating", "generator-twice"], ["discriminator"], {"generator": ["generator-twice"]}),
])
def test_a_model_a_trick_differentiates_twice_stays_eager(tricks, compiled, eager):
    c = composition(*tricks)
    assert compiled_roles(c) == compiled
    assert eager_roles(c) == eager


def test_the_eager_model_is_named_with_the_trick_and_the_reason():
    found = findings(composition("wgan", "gradient-penalty"))
    warnings = [f for f in found if f.severity == "warning"]
    assert len(warnings) == 1 and warnings[0].tricks == ("gradient-penalty",)
    assert str(warnings[0]).startswith(
        "warning: [gradient-penalty] --compile leaves the critic's forward pass eager: "
        "gradient-penalty differentiates it twice, and torch.compile's graphs cannot be "
        "differentiated twice (AOTAutograd has no double backward); the generator's is compiled")
    assert findings(composition("nonsaturating")) == []
    assert announcement(composition("wgan", "gradient-penalty")) == (
        "--compile: torch.compile compiles the generator's forward pass in the first steps "
        "(minutes on a CPU); the steps after run the compiled code")
    assert announcement(composition("nonsaturating")).startswith(
        "--compile: torch.compile compiles the generator's and the critic's forward passes")


def test_nothing_to_compile_is_refused_before_training(tmp_path):
    with pytest.raises(CompositionError) as info:
        Trainer(["nonsaturating", "r1", "generator-twice"], "ring8", out=tmp_path / "run",
                compile=True, **SMALL)
    text = str(info.value)
    assert ("--compile has nothing to compile: r1 differentiates the critic's forward pass "
            "twice; generator-twice differentiates the generator's forward pass twice") in text
    assert "train without --compile" in text
    assert not (tmp_path / "run").exists()
    # without --compile the same composition trains
    Trainer(["nonsaturating", "r1", "generator-twice"], "ring8", **SMALL).fit()


def test_a_missing_cpp_compiler_is_said_before_training(monkeypatch, tmp_path, cli):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("gantrix.compiling.shutil.which", lambda name: None)
    assert "needs a C++ compiler" in missing_backend("cpu")
    result = cli("train", "--trick", "nonsaturating", "--data", "ring8", "--steps", "2",
                 "--compile", "--out", tmp_path / "r")
    assert result.exit_code == 2, result.output  # a user's mistake, as a bad option
    assert ("error: --compile on the CPU needs a C++ compiler, with which torch.compile builds "
            "its code: none found (g++, c++, clang++ or $CXX)") in result.output
    assert "Traceback" not in result.output
    monkeypatch.setenv("CXX", "/opt/my-g++")  # $CXX, when it exists, is taken as given
    monkeypatch.setattr("gantrix.compiling.shutil.which",
                        lambda name: name if name == "/opt/my-g++" else None)
    assert missing_backend("cpu") is None


def test_cuda_without_triton_is_said(monkeypatch):
    monkeypatch.setattr("gantrix.compiling.importlib.util.find_spec", lambda name: None)
    assert missing_backend("cuda").startswith("--compile on CUDA needs triton")
    monkeypatch.setattr("gantrix.compiling.torch.cuda.is_available", lambda: False)
    monkeypatch.setattr("gantrix.compiling.shutil.which", lambda name: "/usr/bin/g++")
    assert missing_backend("auto") is None  # auto without CUDA: the CPU's backend


def test_failures_of_torch_compile_read_as_errors():
    from torch._dynamo.exc import TorchDynamoException  # BackendCompilerFailed's base

    double = failure(RuntimeError("torch.compile with aot_autograd does not currently support "
                                  "double backward"), 7)
    assert isinstance(double, CompileFailed)
    assert str(double).startswith("training step 7 differentiated a compiled model's forward "
                                  "pass twice, which torch.compile's graphs cannot be: a trick "
                                  "of this composition does so")
    donated = failure(RuntimeError("This backward function was compiled with non-empty donated "
                                   "buffers which requires create_graph=False and "
                                   "retain_graph=False."), 3, "r1")
    assert "cannot be: r1 does so without saying it" in str(donated)
    backend = failure(TorchDynamoException("backend='inductor' raised:\nCppCompileError: C++ "
                                           "compile error"), 2)
    assert str(backend) == ("torch.compile failed in training step 2: backend='inductor' "
                            "raised:; train without --compile")
    assert failure(RuntimeError("something else"), 1) is None


@needs_cxx
def test_compiled_training_matches_eager_and_leaves_the_models_plain(tmp_path):
    torch.manual_seed(0)
    eager = Trainer(["nonsaturating", "ema"], "ring8", **SMALL).fit()
    compiled = Trainer(["nonsaturating", "ema"], "ring8", out=tmp_path / "run", compile=True,
                       **SMALL).fit()
    assert compiled.settings.compile and not eager.settings.compile
    for role in ("generator", "discriminator"):
        mine, theirs = (getattr(t.models, role).state_dict() for t in (compiled, eager))
        assert list(mine) == list(theirs)  # no _orig_mod. prefix: checkpoints unchanged
        for key in mine:
            torch.testing.assert_close(mine[key], theirs[key], rtol=1e-4, atol=1e-5)
    # the EMA generator is a copy of the plain model, updated as in the eager run
    torch.testing.assert_close(compiled.sample(64, seed=1), eager.sample(64, seed=1),
                               rtol=1e-4, atol=1e-5)
    # the run samples and resumes like any other (eager, or compiled again)
    loaded = Trainer.load(tmp_path / "run")
    torch.testing.assert_close(loaded.sample(8, seed=2), compiled.sample(8, seed=2))
    resumed = Trainer.resume(tmp_path / "run", steps=4, compile=False).fit()
    assert resumed.step == 4 and not resumed.settings.compile


@needs_cxx
def test_an_undeclared_double_backward_through_a_compiled_critic_is_named(tmp_path, cli):
    result = cli("train", "--trick", "nonsaturating", "--trick", "silent-penalty", "--data",
                 "ring8", "--steps", "2", "--batch-size", "16", "--latent-dim", "2", "--width",
                 "8", "--threads", "1", "--compile", "--quiet", "--out", tmp_path / "r")
    assert result.exit_code == 2, result.output
    assert ("error: training step 1 differentiated a compiled model's forward pass twice, "
            "which torch.compile's graphs cannot be: silent-penalty does so without saying it "
            "(a trick's `differentiates_twice`") in result.output
    assert "Traceback" not in result.output
