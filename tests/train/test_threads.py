"""A run's CPU threads are chosen (`gantrix.threads`), not inherited: ``--threads``, the
config's ``[train] threads``, ``OMP_NUM_THREADS``, else the usable cores (affinity, cgroup
quota) shared by the runs gantrix starts side by side; a busy machine is said once."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gantrix import Recipe, Trainer, threads

ROOT = Path(__file__).parents[2]
TINY = dict(steps=1, batch_size=8, progress=False)


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    """Each test starts with 2 usable cores, no OMP_NUM_THREADS, no cgroup quota, a quiet
    load, and nothing said yet; the process's thread count is restored after it."""
    before = torch.get_num_threads()
    for name in ("OMP_NUM_THREADS", threads.QUIET_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(threads, "CGROUP_V2", Path("/nonexistent/cpu.max"))
    monkeypatch.setattr(threads, "CGROUP_V1", (Path("/nonexistent/q"), Path("/nonexistent/p")))
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(threads, "_said_busy", False)
    monkeypatch.setattr(threads, "_ours", None)
    yield
    torch.set_num_threads(before)


def test_the_run_follows_threads_and_says_so_when_it_changes_the_count(capsys):
    torch.set_num_threads(2)
    trainer = Trainer("nonsaturating", "ring8", threads=1, **TINY)
    assert trainer.settings.threads == 1 and torch.get_num_threads() == 1
    assert "1 CPU thread (--threads 1; torch's count was 2)" in capsys.readouterr().err
    Trainer("nonsaturating", "ring8", threads=1, **TINY)  # no change: nothing said
    assert capsys.readouterr().err == ""
    # a run without threads after it: gantrix's own count gives way to the rule again
    Trainer("nonsaturating", "ring8", **TINY)
    assert torch.get_num_threads() == 2


def test_the_configs_train_table_sets_threads(tmp_path):
    config = tmp_path / "r.toml"
    config.write_text('[[tricks]]\nname = "nonsaturating"\n\n[train]\ndata = "ring8"\n'
                      'threads = 1\n')
    torch.set_num_threads(2)
    trainer = Trainer(Recipe(config=config), **TINY)
    assert trainer.settings.threads == 1 and torch.get_num_threads() == 1
    assert Trainer(Recipe(config=config), threads=2, **TINY).settings.threads == 2  # --threads wins
    assert torch.get_num_threads() == 2


def test_omp_num_threads_is_respected(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.choose() == threads.Choice(1, "OMP_NUM_THREADS", 2)
    assert threads.choose(jobs=2).threads == 1
    assert threads.choose(3).threads == 3  # --threads over OMP_NUM_THREADS
    torch.set_num_threads(2)
    assert threads.for_run().threads == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "4,2")  # nested levels: the first
    assert threads.omp_num_threads() == 4
    for bad in ("", "0", "many"):
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        assert threads.omp_num_threads() is None


def test_the_usable_cores_follow_the_affinity_and_the_cgroup_quota(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert threads.usable_cores() == 8 and threads.choose().threads == 8
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(threads, "CGROUP_V2", quota)
    for text, cores in (("max 100000\n", 8), ("250000 100000\n", 2), ("50000 100000\n", 1),
                        ("1600000 100000\n", 8)):
        quota.write_text(text)
        assert threads.usable_cores() == cores, text
    quota.unlink()  # cgroup v1: the quota and the period in two files
    v1 = (tmp_path / "cfs_quota_us", tmp_path / "cfs_period_us")
    monkeypatch.setattr(threads, "CGROUP_V1", v1)
    v1[1].write_text("100000\n")
    v1[0].write_text("-1\n")
    assert threads.usable_cores() == 8
    v1[0].write_text("300000\n")
    assert threads.usable_cores() == 3 and threads.cgroup_cpus() == 3.0


def test_jobs_split_the_cores_never_below_one(monkeypatch, capsys):
    assert [threads.choose(jobs=j).threads for j in (1, 2, 3)] == [2, 1, 1]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert [threads.choose(jobs=j).threads for j in (1, 2, 3, 8, 20)] == [8, 4, 2, 1, 1]
    assert threads.split(3).threads == 2
    assert ("3 jobs side by side, 2 CPU threads each (8 usable cores // 3 jobs; --threads N to "
            "choose)") in capsys.readouterr().err
    assert threads.split(3, threads=5, say=None).threads == 5
    with pytest.raises(ValueError):
        threads.choose(jobs=0)


def test_a_workers_environment_sets_its_threads_before_torch_starts():
    env = threads.child_environment(3, {"PATH": "/bin"})
    assert env == {"PATH": "/bin", "OMP_NUM_THREADS": "3", threads.QUIET_ENV: "1"}


def test_a_smaller_count_the_process_set_itself_is_kept(capsys):
    """The golden-weights test trains with one thread it sets itself: a run without
    --threads keeps it (and says nothing); a larger count is brought down to the cores."""
    torch.set_num_threads(1)
    choice = threads.for_run()
    assert (choice.threads, choice.source) == (1, "this process") and torch.get_num_threads() == 1
    torch.set_num_threads(4)
    assert threads.for_run().threads == 2 and torch.get_num_threads() == 2
    assert "2 CPU threads (2 usable cores; torch's count was 4)" in capsys.readouterr().err


def test_a_busy_machine_is_said_once_with_the_threads_hint(monkeypatch):
    said = []
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    assert not threads.say_busy(2, said.append) and not said  # below the cores: not busy
    monkeypatch.setattr(os, "getloadavg", lambda: (5.2, 3.0, 1.0))
    monkeypatch.setenv(threads.QUIET_ENV, "1")
    assert not threads.say_busy(2, said.append) and not said  # a launcher's worker: quiet
    monkeypatch.delenv(threads.QUIET_ENV)
    threads.for_run(say=said.append)
    threads.for_run(say=said.append)
    threads.split(2, say=said.append)
    busy = [line for line in said if "busy" in line]
    assert busy == ["this machine is busy (load average 5.2 on 2 usable cores): runs will be "
                    "slower than alone. If other trainings share these cores, give each its "
                    "share with --threads N (N = cores // runs, e.g. --threads 1)"]


def test_threads_is_recorded_and_may_change_on_resume(cli, tmp_path):
    out = tmp_path / "run"
    torch.set_num_threads(2)
    result = cli("train", "--trick", "nonsaturating", "--data", "ring8", "--steps", "2",
                 "--batch-size", "8", "--quiet", "--threads", "1", "--out", out)
    assert result.exit_code == 0, result.output
    assert "threads = 1" in (out / "config.toml").read_text()
    assert torch.get_num_threads() == 1
    again = cli("train", "--resume", out, "--steps", "4", "--threads", "3")
    assert again.exit_code == 0, again.output
    assert torch.get_num_threads() == 3
    assert "3 CPU threads (--threads 3; torch's count was 1)" in again.stderr
    assert Trainer.load(out).settings.threads == 1  # the recorded count stays the config's


def test_nproc_on_the_cpu_gives_each_process_its_share(cli, tmp_path, monkeypatch):
    started = []

    def run(self, command, env=None, **popen):
        started.append((command, env))
        return 0

    from gantrix.children import Children

    monkeypatch.setattr(Children, "run", run)  # the launcher starts torchrun through it
    result = cli("train", "--trick", "nonsaturating", "--data", "ring8", "--device", "cpu",
                 "--nproc", "2", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    (command, env), = started
    assert "--nproc-per-node=2" in command
    assert env["OMP_NUM_THREADS"] == "1" and env[threads.QUIET_ENV] == "1"
    assert "2 processes side by side, 1 CPU thread each (2 usable cores // 2 jobs" in result.stderr
    started.clear()
    assert cli("train", "--trick", "nonsaturating", "--data", "ring8", "--device", "cpu",
               "--nproc", "2", "--threads", "2", "--out", tmp_path / "r2").exit_code == 0
    (command, env), = started
    assert env["OMP_NUM_THREADS"] == "2" and command[command.index("--threads") + 1] == "2"


def test_bench_quality_workers_get_their_share(capsys):
    from gantrix.benchmark import worker_pool

    assert worker_pool(1) is None
    pool = worker_pool(2)
    try:
        assert pool.submit(torch.get_num_threads).result() == 1
    finally:
        pool.shutdown()
    assert "2 runs side by side, 1 CPU thread each" in capsys.readouterr().err


def test_stacked_mnist_runs_get_their_share(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("stacked_mnist_threads_test",
                                                  ROOT / "bench" / "stacked_mnist.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    envs = []

    def run(cmd, env=None, **kwargs):
        envs.append(env)
        raise SystemExit  # nothing to train here: the environment is what is tested

    monkeypatch.setattr(module.CHILDREN, "run", run)  # the script's gantrix.children
    with pytest.raises(SystemExit):
        module.run_cell("dcgan-veegan", 0, 10, tmp_path, 1, [])
    assert envs[0]["OMP_NUM_THREADS"] == "1"


@pytest.mark.slow
def test_the_measurement_runs():
    """bench/threads.py --quick, cut to one configuration (one thread: fast on a busy machine)."""
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "threads.py"), "--quick",
                             "--configs", "one", "--max-seconds", "1"], capture_output=True,
                            text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "| threads a run | alone | 2 side by side |" in result.stdout
    assert "| one thread each (1/1) |" in result.stdout
    assert "Load average before the table" in result.stdout


# --------------------------------------------------------------------------- runs started by hand


@pytest.fixture
def running_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GANTRIX_CACHE", str(tmp_path))
    return tmp_path / threads.RUNNING


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_live_trainings_count_the_processes_alive(running_dir):
    running_dir.mkdir()
    for pid in (os.getppid(), _dead_pid()):
        (running_dir / str(pid)).touch()
    (running_dir / "not-a-pid").touch()
    assert threads.live_trainings() == 1  # the parent; the dead one left no trace that counts
    with threads.running():
        assert (running_dir / str(os.getpid())).exists()
        assert threads.live_trainings() == 2
    assert not (running_dir / str(os.getpid())).exists()


def test_a_run_takes_its_share_of_the_cores_among_the_trainings(running_dir, monkeypatch):
    said = []
    before = torch.get_num_threads()
    running_dir.mkdir()
    (running_dir / str(os.getppid())).touch()  # another training, alive
    torch.set_num_threads(1)
    try:
        sharing = threads.Sharing(threads.Choice(4, "cores", 4), say=said.append)
        with threads.running():
            assert sharing.update(now=100.0) == 2 and torch.get_num_threads() == 2
            assert "2 trainings on this machine: 2 CPU threads" in said[0]
            (running_dir / str(os.getppid())).unlink()  # the other one ended
            assert sharing.update(now=101.0) == 2  # not recounted within RECOUNT_S
            assert sharing.update(now=100.0 + threads.RECOUNT_S) == 4
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("source", ["--threads", "OMP_NUM_THREADS", "this process"])
def test_a_chosen_count_is_not_shared_out(running_dir, source):
    running_dir.mkdir()
    (running_dir / str(os.getppid())).touch()
    before = torch.get_num_threads()
    sharing = threads.Sharing(threads.Choice(before, source, 4))
    with threads.running():
        assert sharing.update(now=100.0) == before == torch.get_num_threads()
