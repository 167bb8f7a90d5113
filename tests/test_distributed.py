"""Several processes: two processes of two CPU devices train one ``model=2,data=2`` mesh.

Each pair of processes runs tests/distributed_worker.py (gloo collectives,
a shared checkpoint directory); their parameters must equal the same steps
run here on one device, before and after resuming from their checkpoint
(past a corrupt later one, which process 0 moves aside).
"""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import distributed_worker as worker
import jax
import numpy as np
import pytest
from test_cohorts import assert_trees_close

from mmojax.train import init_train_state, make_train_step

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed_worker.py")
PROCESSES = 2
FIRST, SECOND = 5, 9  # steps in all after each pair: syncs at updates 4 and 8
CORRUPT = 7  # a corrupt checkpoint after FIRST, planted for the second pair
TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(workdir, name, *args):
    """Runs the worker as ``PROCESSES`` processes; fails with their output if one fails."""
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
        # The second pair reuses the first pair's compiled step.
        "JAX_COMPILATION_CACHE_DIR": str(workdir / "jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    common = ["--coordinator", f"localhost:{free_port()}", "--num-processes", str(PROCESSES)]
    logs = [workdir / f"{name}.{pid}.log" for pid in range(PROCESSES)]
    procs = []
    for pid, log in enumerate(logs):
        with open(log, "w") as out:  # files, not pipes: a full pipe would stall a collective
            cmd = [sys.executable, WORKER, *common, "--process-id", str(pid), "--cpu", *args]
            procs.append(
                subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
            )
    try:
        codes = [p.wait(timeout=TIMEOUT_S) for p in procs]
    except subprocess.TimeoutExpired:
        codes = None
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if codes != [0] * PROCESSES:
        output = "\n".join(f"--- process {i}:\n{log.read_text()}" for i, log in enumerate(logs))
        pytest.fail(f"{name}: exit codes {codes} (None: timed out after {TIMEOUT_S} s)\n{output}")


@pytest.fixture(scope="module")
def single_device():
    """``{steps: flat params}`` after ``FIRST`` and ``SECOND`` steps here, on one device."""
    tx = worker.make_tx()
    state = init_train_state(worker.cohort_tree(), tx, seed=worker.SEED)
    step = make_train_step(worker.MODELS, tx)
    state = worker.train(state, step, 0, FIRST)
    first = worker.flat_params(jax.device_get(state.params))
    state = worker.train(state, step, FIRST, SECOND)
    return {FIRST: first, SECOND: worker.flat_params(jax.device_get(state.params))}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("distributed")


def _params(path):
    with np.load(path) as data:
        return dict(data)


@pytest.fixture(scope="module")
def first_pair(workdir):
    """``(checkpoints, parameters)`` of the first pair of processes: ``FIRST`` steps."""
    ckpts, out = workdir / "checkpoints", workdir / "first.npz"
    launch(workdir, "first", "--steps", str(FIRST), "--checkpoints", str(ckpts), "--out", str(out))
    return ckpts, _params(out)


@pytest.mark.slow
def test_two_processes_train_as_one_device(first_pair, single_device):
    ckpts, params = first_pair
    assert sorted(os.listdir(ckpts)) == [str(FIRST)]
    assert_trees_close(params, single_device[FIRST], rtol=1e-5)


def plant_corrupt_checkpoint(ckpts, source: int, step: int) -> None:
    """A later checkpoint ``step``: a copy of ``source`` with garbage for its array data."""
    shutil.copytree(ckpts / str(source), ckpts / str(step))
    for root, _, files in os.walk(ckpts / str(step) / "state"):
        for name in files:
            if os.path.basename(root) == "d":  # the array data, not the metadata
                (Path(root) / name).write_bytes(b"garbage")


@pytest.mark.slow
def test_two_processes_resume_from_their_checkpoint(workdir, first_pair, single_device):
    """The latest checkpoint is corrupt: both processes skip it, process 0 moves it aside
    (once), both resume from the one before and train on to ``SECOND`` steps."""
    ckpts, out = first_pair[0], workdir / "second.npz"
    plant_corrupt_checkpoint(ckpts, FIRST, CORRUPT)
    launch(
        workdir,
        "second",
        *("--steps", str(SECOND), "--checkpoints", str(ckpts), "--out", str(out), "--resume"),
    )
    assert sorted(os.listdir(ckpts), key=int) == [str(FIRST), str(SECOND)]
    assert os.listdir(workdir / "checkpoints-unusable") == [str(CORRUPT)]
    logs = [(workdir / f"second.{pid}.log").read_text() for pid in range(PROCESSES)]
    assert logs[0].count("could not be restored") == 1 and "could not be" not in logs[1]
    assert_trees_close(_params(out), single_device[SECOND], rtol=1e-5)
