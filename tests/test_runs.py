"""Runs through the command line: what they report, resume rules, overwrite, signals."""

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmojax import train as mtrain
from mmojax.cli import main as cli_main
from mmojax.train import _metrics, _progress, _tasks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 64 examples / batch 8 = 8 micro-batches an epoch = 4 optimizer updates.
TINY = [
    "--task",
    "synthetic",
    "--preset",
    "tiny",
    "--max-train",
    "64",
    "--max-val",
    "24",
    "--batch-size",
    "8",
    "--gradient-accumulation-steps",
    "2",
    "--epochs",
    "2",
    "--learning-rate",
    "1e-3",
    "--warmup-steps",
    "2",
    "--sync-every",
    "2",
    "--convergence-window",
    "3",
    "--convergence-update-every",
    "2",
    "--no-progress",
]


def run_cli(*argv):
    """``(exit code, stdout, stderr)`` of ``mmojax train ...`` in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(["train", *argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished run of 7 optimizer updates (14 micro-batches), a record every 3 updates,
    checkpoints after micro-batches 8, 12 and 14."""
    workdir = tmp_path_factory.mktemp("runs") / "run"
    code, out, err = run_cli(
        *TINY,
        "--workdir",
        str(workdir),
        "--max-steps",
        "7",
        "--log-every",
        "3",
        "--checkpoint-every",
        "2",
    )
    assert code == 0, err
    return workdir, out, err


@pytest.fixture
def run_copy(run, tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(run[0], workdir)
    config = json.loads((workdir / "config.json").read_text())
    config["workdir"] = str(workdir)
    (workdir / "config.json").write_text(json.dumps(config))
    return workdir


@pytest.mark.slow
def test_run_says_what_it_did(run):
    _, out, err = run
    # mmojax's own informational logs are shown even though orbax/absl configured logging
    assert "mmojax: loaded the synthetic sentiment set: 64 train / 24 validation" in err
    assert "mmojax: models:" in err and "params(M)" in err
    # one unit: optimizer updates, with the micro-batches named as such
    assert "7 optimizer updates (14 micro-batches of 8 examples per model)" in out
    assert re.search(r"wall time [\d.]+ s in this process \([\d.]+ s of it before the first", out)
    # the majority-class baseline beside the accuracies
    assert re.search(r"majority class\s+0\.\d{4}", out)


@pytest.mark.slow
def test_records_cover_whole_log_periods_and_evaluation_runs_several_times(run):
    records = _metrics.read_metrics(run[0] / "metrics.jsonl")
    trains = [r for r in records if r["kind"] == "train"]
    # every record but the last averages 3 updates = 6 micro-batches: none at the epoch end
    assert [r["micro_batches"] for r in trains] == [6, 6, 2]
    assert [r["step"] for r in trains] == [6, 12, 14]
    evals = [r["update"] for r in records if r["kind"] == "eval"]
    assert len(evals) >= 4 and evals[-1] == 7


@pytest.mark.slow
def test_resume_refuses_flags_it_cannot_apply(run_copy):
    before = (run_copy / "config.json").read_bytes()
    code, _, err = run_cli(
        "--workdir",
        str(run_copy),
        "--resume",
        "--learning-rate",
        "5",
        "--models",
        "bert",
        "--task",
        "sst2",
        "--no-progress",
    )
    assert code == 2
    for flag in ("--learning-rate 5.0", "--models bert", "--task sst2"):
        assert flag in err
    assert "start a new run" in err
    code, _, err = run_cli("--workdir", str(run_copy), "--resume", "--epochs", "1")
    assert code == 2 and "extend" in err
    assert (run_copy / "config.json").read_bytes() == before


@pytest.mark.slow
def test_resume_applies_the_flags_it_documents(run_copy):
    # 2 epochs are 8 updates: a third one extends the run, --max-steps stops it at 9
    code, out, err = run_cli(
        "--workdir",
        str(run_copy),
        "--resume",
        "--epochs",
        "3",
        "--max-steps",
        "9",
        "--eval-every",
        "1",
        "--no-progress",
    )
    assert code == 0, err
    assert "mmojax: resumed from update 7" in err
    assert "9 optimizer updates" in out
    assert re.search(r"s in all with [\d.]+ s before the resume", out)
    records = _metrics.read_metrics(run_copy / "metrics.jsonl")
    assert [r["update"] for r in records if r["kind"] == "eval" and r["update"] > 7] == [8, 9]
    saved = json.loads((run_copy / "config.json").read_text())
    assert (saved["max_steps"], saved["eval_every"], saved["epochs"]) == (9, 1, 3)


@pytest.mark.slow
def test_resume_checks_the_config_saved_in_the_checkpoint(run_copy):
    # config.json edited (as the old CLI did when a new run reused the directory):
    # the checkpoint still knows the settings it was made with.
    values = json.loads((run_copy / "config.json").read_text())
    values["learning_rate"] = 0.5
    (run_copy / "config.json").write_text(json.dumps(values))
    config = mtrain.TrainConfig.from_dict(values)
    with pytest.raises(ValueError, match=r"learning_rate .*checkpoint 14"):
        mtrain.train(config, resume=True)


@pytest.mark.slow
def test_corrupt_latest_checkpoint_is_moved_aside_and_the_run_goes_on(run, run_copy):
    assert sorted(os.listdir(run[0] / "checkpoints"), key=int) == ["8", "12", "14"]
    for root, _, files in os.walk(run_copy / "checkpoints" / "14" / "state"):
        for name in files:
            if os.sep + "d" in root:  # the array data, not the metadata
                (Path(root) / name).write_bytes(b"garbage")
    # Resumes from 12 and saves 14 again at the end: no "Checkpoint for step 14 already
    # exists", now or on any later resume.
    code, out, err = run_cli("--workdir", str(run_copy), "--resume", "--no-progress")
    assert code == 0, err
    assert "resumed from update 6" in err
    warnings = [line for line in err.splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1 and "moved" in warnings[0] and "14" in warnings[0]
    assert "Traceback" not in err and "Event loop is closed" not in err
    assert (run_copy / "checkpoints-unusable" / "14").is_dir()
    assert sorted(os.listdir(run_copy / "checkpoints"), key=int)[-1] == "14"
    code, _, err = run_cli("--workdir", str(run_copy), "--resume", "--no-progress")
    assert code == 0, err


@pytest.mark.slow
def test_overwrite_removes_the_old_run_first(run_copy):
    (run_copy / "notes.txt").write_text("mine")
    code, _, err = run_cli(*TINY, "--workdir", str(run_copy), "--overwrite", "--max-steps", "1")
    assert code == 0, err
    assert sorted(os.listdir(run_copy / "checkpoints")) == ["2"]
    records = _metrics.read_metrics(run_copy / "metrics.jsonl")
    assert max(r.get("update", 0) for r in records) == 1
    assert (run_copy / "notes.txt").read_text() == "mine"  # not a run's file: kept


def test_majority_baseline():
    task = _tasks.prepare_task("synthetic", seed=0, max_train=32, max_val=30)
    labels = task.validation_raw.labels
    positive = float(sum(labels)) / len(labels)
    value, label = _tasks.majority_baseline(task)
    assert value == pytest.approx(max(positive, 1 - positive))
    assert label == ("positive" if positive > 0.5 else "negative")


def test_progress_bar_says_compiling_then_labels_its_metrics():
    out = io.StringIO()
    bar = _progress.Progress(100, 10, "accuracy", file=out)
    first = out.getvalue()
    assert "compiling" in first and "10/100" in first
    assert "?" not in first and "<" not in first  # no rate, no ETA while compiling
    bar.update(11)
    bar.show(train_loss={"bert": 0.5123}, validation=None)
    bar.show(validation={"bert": 0.75})
    bar.bar.refresh()
    text = out.getvalue()
    bar.close()
    assert "train loss bert 0.512" in text and "val accuracy bert 0.750" in text


# --- signals, in a real subprocess ----------------------------------------------------------

# 4000 examples / batch 8: 500 micro-batches an epoch, far more than the interrupt points need.
LONG = [*TINY[:2], *TINY[2:4], "--max-train", "4000", *TINY[6:], "--log-every", "1"]


def _start(workdir, *extra):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "mmojax.cli", "train", *LONG, "--workdir", str(workdir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


def _wait(proc, ready, timeout=600):
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(
                f"the run ended before the interrupt point:\n{proc.communicate()[1]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the interrupt point")
        time.sleep(0.05)


def _train_records(workdir):
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return 0
    return path.read_text().count('"kind": "train"')


def _stop(proc, sig):
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


def _check_resume_hint(workdir, err):
    """The hint is true: where the CLI says the run can be resumed, it can."""
    match = re.search(
        r"stopped by SIG\w+ at update (\d+); a checkpoint is saved\. Resume "
        r"with: mmojax train --workdir (\S+) --resume",
        err,
    )
    if match is None:
        assert "nothing to resume" in err, err
        assert not (workdir / "checkpoints").exists() or not os.listdir(workdir / "checkpoints")
        return None
    assert match.group(2) == str(workdir)
    return int(match.group(1))


@pytest.mark.slow
@pytest.mark.parametrize(
    "point,sig",
    [
        ("startup", signal.SIGINT),
        ("compiling", signal.SIGINT),
        ("mid-run", signal.SIGINT),
        ("mid-run", signal.SIGTERM),
    ],
)
def test_signal_stops_saves_and_resumes(tmp_path, point, sig):
    workdir = tmp_path / "run"
    proc = _start(workdir)
    if point == "startup":  # the config is written: data ready, compiling or about to
        _wait(proc, lambda: (workdir / "config.json").exists())
    elif point == "compiling":  # the checkpoint manager exists: the first step is compiling
        _wait(proc, lambda: (workdir / "checkpoints").exists())
        time.sleep(1.0)
    else:
        _wait(proc, lambda: _train_records(workdir) >= 3)
    code, _, err = _stop(proc, sig)
    assert code == 128 + sig, err
    assert "Traceback" not in err
    update = _check_resume_hint(workdir, err)
    if point == "mid-run":
        assert update is not None and update >= 3
    if point == "compiling":  # the first step finishes, is saved, and nothing runs after it
        assert update == 0
    if update is None:
        return
    records = _metrics.read_metrics(workdir / "metrics.jsonl")
    assert records[-1]["event"] == "interrupted" and records[-1]["saved"]
    # training did not go on after the signal; what it did is recorded up to the stop
    trains = [r for r in records if r["kind"] == "train"]
    assert trains and trains[-1]["update"] == update
    assert sum(r["micro_batches"] for r in trains) == trains[-1]["step"]
    if sig == signal.SIGINT:
        resumed = subprocess.run(
            [
                sys.executable,
                "-m",
                "mmojax.cli",
                "train",
                "--workdir",
                str(workdir),
                "--resume",
                "--max-steps",
                str(update + 2),
                "--no-progress",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=600,
            env={**os.environ, "JAX_PLATFORMS": "cpu"},
            check=False,
        )
        assert resumed.returncode == 0, resumed.stderr
        assert f"{update + 2} optimizer updates" in resumed.stdout
