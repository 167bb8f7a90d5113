"""Many models, many devices from the command line: --members, --mesh, process flags.

tests/conftest.py gives the test process 4 host devices. The runs are tiny
(one BERT cohort of 2, a few updates); the checks that train share two module
runs: the same cohort trained without a mesh, and on a 2 x 2 mesh in two
halves (the second a resume).
"""

import contextlib
import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from mmojax import cli
from mmojax.cli import main as cli_main
from mmojax.train import Checkpointer, TrainConfig, _metrics, _rundir

# 32 examples / batch 4 = 8 micro-batches an epoch, one per update.
TINY = [
    "--task",
    "synthetic",
    "--preset",
    "tiny",
    "--models",
    "bert",
    "--members",
    "bert=2",
    "--max-train",
    "32",
    "--max-val",
    "16",
    "--batch-size",
    "4",
    "--gradient-accumulation-steps",
    "1",
    "--epochs",
    "1",
    "--learning-rate",
    "1e-3",
    "--warmup-steps",
    "1",
    "--sync-every",
    "2",
    "--convergence-window",
    "3",
    "--convergence-update-every",
    "2",
    "--log-every",
    "1",
    "--eval-every",
    "2",
    "--no-progress",
]
MEMBERS = ["bert/0", "bert/1"]


def run_cli(*argv):
    """``(exit code, stdout, stderr)`` of ``mmojax ...`` in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _parse(*argv):
    return cli.config_from_args(cli.build_parser().parse_args(["train", *argv]))


def _final_eval(workdir):
    records = _metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"))
    return [r for r in records if r["kind"] == "eval"][-1]


# -- parsing ---------------------------------------------------------------------------


def test_members_mesh_and_process_flags_become_config_fields():
    config = _parse(
        "--models",
        "bert,gpt2",
        "--members",
        "bert=4",
        "--mesh",
        "data=2, model=2",
        "--batch-size",
        "8",
        "--coordinator",
        "10.0.0.1:1234",
        "--num-processes",
        "2",
        "--process-id",
        "1",
    )
    assert config.members == {"bert": 4}
    assert config.mesh == "model=2,data=2"  # the canonical form
    assert config.mesh_shape() == {"model": 2, "data": 2}
    assert (config.coordinator, config.num_processes, config.process_id) == (
        "10.0.0.1:1234",
        2,
        1,
    )
    assert config.model_names() == ["bert/0", "bert/1", "bert/2", "bert/3", "gpt2"]
    plain = _parse("--models", "bert,gpt2", "--mesh", "none")
    assert (plain.members, plain.mesh, plain.coordinator) == (None, None, None)
    assert plain.cohort_chunk is None
    assert _parse("--members", "bert=4", "--cohort-chunk", "2").cohort_chunk == 2
    assert plain.model_names() == ["bert", "gpt2"]


@pytest.mark.parametrize(
    "argv,problem",
    [
        (["--members", "bert"], "bert=4,gpt2=2"),
        (["--members", "bert=two"], "must be an integer"),
        (["--cohort-chunk", "0"], ">= 1"),
        (["--num-processes", "0"], ">= 1"),
        (["--process-id", "-1"], ">= 0"),
    ],
)
def test_malformed_flags_fail_at_parse_time(tmp_path, capsys, argv, problem):
    with pytest.raises(SystemExit) as info:
        cli_main(["train", "--workdir", str(tmp_path / "w"), *argv])
    assert info.value.code == 2
    assert problem in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_resume_takes_the_process_flags_of_its_own_command_line(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    saved = TrainConfig(
        models=("bert",),
        workdir=str(workdir),
        members={"bert": 2},
        mesh="model=2,data=2",
        coordinator="host:1",
        num_processes=2,
        process_id=1,
    )
    _rundir.write_config(str(workdir), saved)
    argv = ["train", "--workdir", str(workdir), "--resume", "--mesh", "data=4"]
    config = cli._resume_config(cli.build_parser().parse_args(argv), argv)
    # launched as one process now; the mesh may change (the checkpoint is resharded)
    assert (config.coordinator, config.num_processes, config.process_id) == (None, None, None)
    assert config.mesh == "model=1,data=4" and config.members == {"bert": 2}
    argv = ["train", "--workdir", str(workdir), "--resume", "--members", "bert=3"]
    with pytest.raises(ValueError, match="--members bert=3"):
        cli._resume_config(cli.build_parser().parse_args(argv), argv)


# -- validation: a clear error naming the flag, nothing written ---------------------------


@pytest.mark.parametrize(
    "argv,says",
    [
        (["--members", "gpt2=2"], ["--members", "not among the models"]),
        (["--members", "bert=0"], ["--members", ">= 1"]),
        (["--members", "bert=2", "--coupling", "mutual"], ["--members", "coupling"]),
        (["--members", "bert=2", "--gradient-cosines"], ["--members", "gradient_cosines"]),
        (["--mesh", "model=2,pipe=2"], ["--mesh", "AXIS=SIZE"]),
        (["--mesh", "data=3"], ["--mesh", "multiple of 3", "--batch-size"]),
        (["--mesh", "model=2"], ["--mesh", "no cohort", "--members"]),
        (["--mesh", "model=2", "--members", "bert=3"], ["--mesh", "bert has 3"]),
        (["--cohort-chunk", "2"], ["--cohort-chunk", "no cohort", "--members"]),
        (
            ["--cohort-chunk", "2", "--members", "bert=2", "--mesh", "model=2"],
            ["--cohort-chunk", "spreads over 2 device groups"],
        ),
        (
            ["--mesh", "model=4,data=2", "--members", "bert=4"],
            ["--mesh", "needs 8 devices, there are 4", "xla_force_host_platform_device_count"],
        ),
        (["--coordinator", "localhost:1234"], ["missing num_processes, process_id"]),
        (
            ["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"],
            ["--coordinator", "HOST:PORT"],
        ),
        (
            ["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "2"],
            ["--process-id", "0..1"],
        ),
    ],
)
def test_bad_settings_are_one_line_errors_before_anything_is_written(tmp_path, argv, says):
    workdir = tmp_path / "w"
    code, _, err = run_cli(
        "train", "--models", "bert", "--batch-size", "8", "--workdir", str(workdir), *argv
    )
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for text in says:
        assert text in err, (text, err)
    assert not workdir.exists()


def test_config_refuses_what_the_cli_refuses():
    with pytest.raises(ValueError, match="^members"):
        TrainConfig(models=("bert",), members={"roberta": 2})
    with pytest.raises(ValueError, match="^members"):
        TrainConfig(models=("bert",), members={"bert": 2}, coupling="mutual")
    with pytest.raises(ValueError, match="^mesh"):
        TrainConfig(models=("bert",), batch_size=6, mesh="data=4")
    with pytest.raises(ValueError, match="multi-process run needs .* missing process_id"):
        TrainConfig(coordinator="h:1", num_processes=2)


def _two_processes(argv, tmp_path):
    """``mmojax train *argv`` started as processes 0 and 1 (2 CPU devices each); their logs."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    argv = [*argv, "--coordinator", f"localhost:{port}", "--num-processes", "2"]
    procs, logs = [], [tmp_path / f"process{i}.log" for i in range(2)]
    for i, log in enumerate(logs):
        with open(log, "w") as out:  # files, not pipes: a full pipe would stall a collective
            command = [sys.executable, "-m", "mmojax.cli", "train", *argv, "--process-id", str(i)]
            procs.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT))
    return procs, logs


def _wait_all(procs, timeout=600):
    try:
        return [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


# -- runs -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cohort_run(tmp_path_factory):
    """The cohort bert=2 trained for 4 updates without a mesh, one member at a time."""
    workdir = tmp_path_factory.mktemp("scale") / "cohort"
    code, out, err = run_cli(
        "train", *TINY, "--workdir", str(workdir), "--max-steps", "4", "--cohort-chunk", "1"
    )
    assert code == 0, err
    assert json.loads((workdir / "config.json").read_text())["cohort_chunk"] == 1
    return workdir, out


@pytest.fixture(scope="module")
def mesh_run(tmp_path_factory):
    """The same run on a model=2,data=2 mesh: 2 updates, then resumed to 4."""
    workdir = tmp_path_factory.mktemp("scale") / "mesh"
    argv = ["train", *TINY, "--workdir", str(workdir), "--mesh", "model=2,data=2"]
    code, _, err = run_cli(*argv, "--max-steps", "2", "--no-export")
    assert code == 0, err
    code, out, err = run_cli(
        "train", "--workdir", str(workdir), "--resume", "--max-steps", "4", "--no-progress"
    )
    assert code == 0, err
    return workdir, out


@pytest.mark.slow
def test_a_cohort_reports_each_member_as_a_model(cohort_run):
    workdir, out = cohort_run
    records = _metrics.read_metrics(workdir / "metrics.jsonl")
    trains = [r for r in records if r["kind"] == "train"]
    assert len(trains) == 4
    for record in [*trains, _final_eval(workdir)]:
        assert list(record["models"]) == MEMBERS
        for values in record["models"].values():
            assert all(v is None or math.isfinite(v) for v in values.values())
            assert math.isfinite(values["loss"])
    # members start from their own seeds: their losses differ from the first step on
    first = trains[0]["models"]
    assert first["bert/0"]["loss"] != first["bert/1"]["loss"]
    final = _final_eval(workdir)["models"]
    assert final["bert/0"]["loss"] != final["bert/1"]["loss"]
    assert {"accuracy", "loss"} <= set(final["bert/0"])
    # the results table and the plots name the members
    for member in MEMBERS:
        assert f"\n{member} " in out
    assert (workdir / "loss.png").exists()
    assert json.loads((workdir / "config.json").read_text())["members"] == {"bert": 2}


@pytest.mark.slow
def test_a_cohort_exports_each_member_and_predict_reads_them(cohort_run):
    from mmojax.train import _inference

    workdir, _ = cohort_run
    for member in MEMBERS:
        assert (workdir / "export" / member / "config.json").exists()
    dirs = _inference.model_directories(str(workdir))
    assert list(dirs) == MEMBERS
    code, out, err = run_cli(
        "evaluate", "--workdir", str(workdir), "--task", "synthetic", "--max-examples", "8"
    )
    assert code == 0, err
    rows = {line.split()[0] for line in out.splitlines()[2:]}
    assert rows == {*MEMBERS, "ensemble"}


@pytest.mark.slow
def test_a_mesh_run_resumed_equals_the_run_on_one_device(cohort_run, mesh_run):
    (plain, _), (meshed, out) = cohort_run, mesh_run
    saved = json.loads((meshed / "config.json").read_text())
    assert saved["mesh"] == "model=2,data=2" and saved["max_steps"] == 4
    records = _metrics.read_metrics(meshed / "metrics.jsonl")
    assert [r["event"] for r in records if r["kind"] == "event"] == ["resumed"]
    a, b = _final_eval(plain), _final_eval(meshed)
    assert a["update"] == b["update"] == 4
    for member in MEMBERS:
        for metric, value in a["models"][member].items():
            np.testing.assert_allclose(
                b["models"][member][metric], value, rtol=0, atol=1e-4, err_msg=(member, metric)
            )
    for member in MEMBERS:
        assert f"\n{member} " in out


def test_a_cohort_from_a_checkpoint_loads_it_into_every_member(tmp_path):
    import jax
    import tokenizer_fixtures
    import transformers

    from mmojax.train import _models, _tasks

    path = str(tmp_path / "bert")
    hf = transformers.BertConfig(
        vocab_size=tokenizer_fixtures.wordpiece().get_vocab_size(),
        max_position_embeddings=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    transformers.FlaxBertModel(hf, seed=1).save_pretrained(path)
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_fixtures.wordpiece(),
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
    ).save_pretrained(path)
    config = _parse("--models", f"bert={path}", "--members", "bert=3", "--max-train", "16")
    task = _tasks.prepare_task(
        "synthetic",
        max_train=16,
        max_val=8,
        models=config.models,
        model_tokenizers={"bert": path},
        max_length=64,
    )
    built = _models.build_run_models(config, task)
    assert list(built) == ["bert/0", "bert/1", "bert/2"]
    params = _models.run_params(config, built)
    assert params["bert"].size == 3
    backbone = [m.params["bert"] for m in built.values()]
    heads = [m.params["classifier"]["kernel"] for m in built.values()]
    for other in backbone[1:]:  # the checkpoint's weights in every member
        for a, b in zip(jax.tree.leaves(backbone[0]), jax.tree.leaves(other), strict=True):
            np.testing.assert_array_equal(a, b)
    assert not np.allclose(heads[0], heads[1]) and not np.allclose(heads[1], heads[2])
    # and member_params gives each member's parameters back
    members = _models.member_params(params)
    assert list(members) == list(built)
    np.testing.assert_array_equal(members["bert/2"]["classifier"]["kernel"], heads[2])


@pytest.mark.slow
def test_two_processes_train_the_cohort_as_one_process_does(cohort_run, tmp_path):
    """``mmojax train`` started twice (2 CPU devices each) on a 2 x 2 mesh over both."""
    plain, _ = cohort_run
    workdir = tmp_path / "two"
    argv = [*TINY, "--workdir", str(workdir), "--max-steps", "4", "--mesh", "model=2,data=2"]
    procs, logs = _two_processes(argv, tmp_path)
    codes = _wait_all(procs)
    assert codes == [0, 0], "\n".join(log.read_text()[-3000:] for log in logs)
    a, b = _final_eval(plain), _final_eval(workdir)
    assert a["update"] == b["update"] == 4
    for member in MEMBERS:
        for metric, value in a["models"][member].items():
            np.testing.assert_allclose(
                b["models"][member][metric], value, rtol=0, atol=1e-4, err_msg=(member, metric)
            )
        assert (workdir / "export" / member / "flax_model.msgpack").exists()
    # process 0 wrote the run's files once: one record per update, no duplicates
    records = _metrics.read_metrics(workdir / "metrics.jsonl")
    assert [r["update"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]


@pytest.mark.slow
def test_a_signal_to_one_process_stops_every_process_at_the_same_step(tmp_path):
    """SIGTERM reaches process 1 only: both stop after the same step, save it together
    (orbax's save is collective) and exit 143; the run resumes from that step."""
    workdir = tmp_path / "run"
    argv = [*TINY, "--workdir", str(workdir), "--mesh", "model=2,data=2", "--epochs", "40"]
    procs, logs = _two_processes([*argv, "--eval-every", "1000", "--no-export"], tmp_path)
    deadline = time.monotonic() + 600
    metrics = workdir / "metrics.jsonl"
    while not (metrics.exists() and metrics.read_text().count('"kind": "train"') >= 3):
        assert all(p.poll() is None for p in procs), "\n".join(x.read_text() for x in logs)
        assert time.monotonic() < deadline
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGTERM)
    codes = _wait_all(procs)
    text = "\n".join(log.read_text()[-3000:] for log in logs)
    assert codes == [128 + signal.SIGTERM] * 2, text
    records = _metrics.read_metrics(metrics)
    stop = records[-1]
    assert stop["event"] == "interrupted" and stop["saved"] and stop["signal"] == "SIGTERM"
    assert 3 <= stop["update"] < 320
    ckpt = Checkpointer(workdir / "checkpoints")
    assert ckpt.steps()[-1] == stop["step"]
    ckpt.close()
    # one process, 4 devices, the same mesh: it goes on from the saved step
    code, _, err = run_cli(
        "train",
        "--workdir",
        str(workdir),
        "--resume",
        "--max-steps",
        str(stop["update"] + 1),
        "--no-progress",
    )
    assert code == 0, err
    trains = [r for r in _metrics.read_metrics(metrics) if r["kind"] == "train"]
    assert trains[-1]["update"] == stop["update"] + 1


def test_eval_batches_are_split_over_data_when_their_size_allows_else_replicated():
    from mmojax.train import _loop, _mesh

    mesh = _mesh.make_mesh("model=1,data=4")
    assert _loop._eval_placement(None, 6) is None
    for rows, split in ((8, True), (6, False)):
        batch = {"input_ids": np.zeros((rows, 5), np.int32), "mask": np.ones(rows, np.float32)}
        placed = _loop._eval_placement(mesh, rows)(batch)
        for leaf in placed.values():
            assert leaf.sharding.is_fully_replicated is not split
            assert len(leaf.sharding.device_set) == 4
            np.testing.assert_array_equal(np.asarray(leaf), batch["mask"] if leaf.ndim == 1 else 0)
