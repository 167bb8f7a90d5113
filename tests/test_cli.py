"""The command line without training: parsing, help, input errors, run-directory checks."""

import json
import os
import re
import subprocess
import sys

import pytest

from mmojax import cli
from mmojax.cli import main as cli_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_actions():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["train"]


def test_help_shows_a_default_for_every_option(monkeypatch):
    monkeypatch.setenv("COLUMNS", "10000")  # one line per option (and its help)
    lines = _train_actions().format_help().split("options:", 1)[1].splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"  -", line)]
    entries = {
        lines[i].split()[0].rstrip(","): " ".join(lines[i:j])
        for i, j in zip(starts, starts[1:] + [len(lines)])
    }
    options = [a for a in _train_actions()._actions if a.option_strings and a.dest != "help"]
    assert len(options) > 30
    for action in options:
        assert "(default:" in entries[action.option_strings[0]], action.option_strings


def test_help_imports_no_heavy_library():
    code = (
        "import sys; from mmojax import cli; cli.build_parser().parse_args(['train']); "
        "print(sorted(m for m in ('flax', 'transformers', 'orbax', 'matplotlib', 'tqdm', "
        "'mmojax.train._loop') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.strip() == "[]"


def test_one_flag_per_hyperparameter_named_like_the_optimizer():
    flags = {s for a in _train_actions()._actions for s in a.option_strings}
    for new in (
        "--learning-rate",
        "--model-weights",
        "--gradient-accumulation-steps",
        "--convergence-window",
        "--convergence-update-every",
    ):
        assert new in flags
    for old in ("--lr", "--weights", "--grad-accum", "--conv-window", "--conv-update-every"):
        assert old not in flags


@pytest.mark.parametrize(
    "argv,flag,problem",
    [
        (["--seed", "-1"], "--seed", ">= 0"),
        (["--max-val", "0"], "--max-val", ">= 1"),
        (["--max-train", "0"], "--max-train", ">= 1"),
        (["--weight-decay", "-1"], "--weight-decay", ">= 0"),
        (["--convergence-window", "0"], "--convergence-window", ">= 2"),
        (["--convergence-update-every", "0"], "--convergence-update-every", ">= 1"),
        (["--learning-rate", "0"], "--learning-rate", "> 0"),
        (["--model-weights", "bert"], "--model-weights", "bert=1.0"),
        (["--resume", "--overwrite"], "--overwrite", "exclude each other"),
    ],
)
def test_bad_values_fail_at_parse_time_naming_the_flag(tmp_path, capsys, argv, flag, problem):
    with pytest.raises(SystemExit) as info:
        cli_main(["train", "--workdir", str(tmp_path / "w"), *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and problem in err
    assert not (tmp_path / "w").exists()


def test_weights_of_unknown_models_are_an_error(tmp_path, capsys):
    code = cli_main(["train", "--workdir", str(tmp_path / "w"), "--model-weights", "nosuchmodel=1"])
    err = capsys.readouterr().err
    assert code == 2 and "--model-weights" in err and "nosuchmodel" in err
    assert "not among the models" in err
    assert not (tmp_path / "w").exists()


def test_config_validates_what_the_cli_checks():
    from mmojax.train import TrainConfig

    for field, value in (
        ("seed", -1),
        ("weight_decay", -1.0),
        ("convergence_window", 0),
        ("convergence_update_every", 0),
        ("max_val", 0),
        ("max_train", 0),
        ("models", ("bert", "xlnet")),
    ):
        with pytest.raises(ValueError, match=field):
            TrainConfig(**{field: value})
    with pytest.raises(ValueError, match="not among the models"):
        TrainConfig(models=("bert",), model_weights={"bert": 1.0, "gpt2": 2.0})
    # the default (the paper's three weights) is kept for the models it names
    assert TrainConfig(models=("gpt2",)).model_weights == {"gpt2": 0.8}


def test_workdir_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "afile"
    path.write_text("x")
    for workdir, says in ((path, "is a file, not a directory"), (path / "sub", "is a file")):
        code = cli_main(["train", "--workdir", str(workdir), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and str(workdir) in err and says in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_workdir_is_a_one_line_error(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code = cli_main(["train", "--workdir", str(locked / "run"), "--no-progress"])
    finally:
        locked.chmod(0o700)
    err = capsys.readouterr().err
    assert code == 2 and "not writable" in err and str(locked) in err


def _fake_run(path):
    """A run directory as a run leaves it (contents do not matter for refusing it)."""
    (path / "checkpoints" / "8").mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"learning_rate": 0.001, "models": ["bert"]}))
    (path / "tokenizer.json").write_text("{}")
    (path / "metrics.jsonl").write_text("")
    return {p: p.read_bytes() for p in path.iterdir() if p.is_file()}


@pytest.mark.parametrize("models", ["bert,xlnet", "bert"])
def test_new_run_never_touches_an_existing_run(tmp_path, capsys, models):
    before = _fake_run(tmp_path)
    code = cli_main(["train", "--workdir", str(tmp_path), "--models", models, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert ("xlnet" in err) if "xlnet" in models else ("not empty" in err and "--resume" in err)
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["8"]


def test_nothing_is_written_before_the_data_is_validated(tmp_path, capsys):
    code = cli_main(
        [
            "train",
            "--task",
            "sst2",
            "--data",
            str(tmp_path / "missing"),
            "--workdir",
            str(tmp_path / "w"),
            "--no-progress",
        ]
    )
    assert code == 2 and "missing" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
    # --overwrite with bad data leaves the old run alone too
    before = _fake_run(tmp_path / "old")
    code = cli_main(
        [
            "train",
            "--task",
            "sst2",
            "--data",
            str(tmp_path / "missing"),
            "--workdir",
            str(tmp_path / "old"),
            "--overwrite",
            "--no-progress",
        ]
    )
    assert code == 2
    assert {p: p.read_bytes() for p in (tmp_path / "old").iterdir() if p.is_file()} == before


def test_resume_without_a_run_says_so(tmp_path, capsys):
    code = cli_main(["train", "--workdir", str(tmp_path / "none"), "--resume", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot resume" in err and str(tmp_path / "none") in err


@pytest.mark.parametrize("experiment", ["tasks", "steps-to-target", "compute", "all"])
def test_reproduce_real_tasks_need_data_dir(tmp_path, capsys, experiment):
    with pytest.raises(SystemExit) as info:
        cli_main(["reproduce", experiment, "--workdir", str(tmp_path / "r")])
    assert info.value.code == 2
    assert "--data-dir" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def _readme():
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


def test_readme_train_commands_parse():
    commands = re.findall(r"^\s*(?:.*&& )?mmojax (train [^\n`]*?)\s*$", _readme(), re.MULTILINE)
    commands = [c.split("#")[0] for c in commands]
    concrete = [c for c in commands if "|" not in c and "..." not in c and "--help" not in c]
    assert len(concrete) >= 2  # the quick start and the SST-2 command
    parser = cli.build_parser()
    for command in concrete:
        parser.parse_args(command.replace("\\", "").split())


def test_readme_says_how_long_tests_take_and_how_to_skip_slow_ones():
    text = _readme()
    assert 'python -m pytest tests -m "not slow"' in text
    assert re.search(r"tests? take[s]? about \d+ min", text)
    assert "--task sst2" in text and "majority" in text


def test_resume_names_each_refused_flag_before_touching_anything(tmp_path, capsys):
    from mmojax.train import TrainConfig

    saved = TrainConfig(workdir=str(tmp_path)).to_dict()
    (tmp_path / "config.json").write_text(json.dumps(saved))
    code = cli_main(
        [
            "train",
            "--workdir",
            str(tmp_path),
            "--resume",
            "--no-decay",
            "--learning-rate",
            "5",
            "--model-weights",
            "bert=1,gpt2=0.8,roberta=1.2",
            "--max-steps",
            "3",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "--no-decay (the run's cosine_decay: True)" in err
    assert "--learning-rate 5.0 (the run's learning_rate: 3e-05)" in err
    assert "--model-weights" not in err.split("On resume only")[0]  # same weights: accepted
    assert "--max-steps" not in err.split("On resume only")[0]  # resumable: applied, not refused
    assert json.loads((tmp_path / "config.json").read_text()) == saved
