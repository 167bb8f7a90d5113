"""The reproduction harness on a tiny configuration: runs, resume, report, coupling losses."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mmojax
from mmojax import reproduce as repro
from mmojax import train as mtrain
from mmojax.reproduce import _diagnostics, _results, _sections, _specs, _stats, _verdicts
from mmojax.train import _coupling


@pytest.mark.slow
def test_reproduce_tiny_ablation_resumes_and_reports(tmp_path, monkeypatch):
    opts = repro.ReproduceOptions(
        experiments=("ablation",),
        seeds=2,
        workdir=str(tmp_path / "rep"),
        preset="tiny",
        synthetic_train=24,
        methods=("mmo-type-shape", "independent", "distillation"),
        settings=("literal-paper",),
        progress=False,
        compile_cache=False,
    )
    path = repro.reproduce(opts)
    text = open(path).read()
    assert "## 1. Ablation" in text and "literal-paper" in text
    assert "| mmo-type-shape |" in text and "| independent |" in text and "[82.4]" in text
    assert "## 6. Collapse diagnostics" in text and "## 8. Verdicts" in text
    results = [
        json.load(open(os.path.join(d, "result.json")))
        for d, _, files in os.walk(tmp_path / "rep" / "runs")
        if "result.json" in files
    ]
    # mmo + independent for 2 seeds, distillation students + teacher for 2 seeds.
    assert len(results) == 8
    # Finished runs drop their checkpoints (keep_checkpoints=False by default).
    assert not [d for d, dirs, _ in os.walk(tmp_path / "rep" / "runs") if "checkpoints" in dirs]
    assert {r["method"] for r in results} == {"mmo-type-shape", "independent", "distillation"}
    # No machine paths: each run's directory is recorded relative to the workdir.
    assert all(not os.path.isabs(r["config"]["workdir"]) for r in results)
    assert all(r["config"]["workdir"] == "runs/" + r["run_id"] for r in results)
    # Labels beside the predictions, equal to the data the run was evaluated on.
    run = next(r for r in results if r["method"] == "mmo-type-shape" and r["seed"] == 1)
    arrays = np.load(tmp_path / "rep" / "runs" / run["run_id"] / "arrays.npz")
    raw = mtrain._tasks.load_raw("synthetic", None, 1, 24, 8)
    np.testing.assert_array_equal(arrays["labels"], raw.validation.labels)
    assert arrays["probs/bert"].shape == (len(raw.validation.labels), 2)
    opts_json = json.load(open(tmp_path / "rep" / "options.json"))
    assert not os.path.isabs(opts_json["workdir"])
    # Numbers in the report come from the runs: the mmo bert accuracy of seed 0 and 1.
    accs = sorted(
        r["final"]["bert"]["accuracy"] for r in results if r["method"] == "mmo-type-shape"
    )
    mean = 100 * np.mean(accs)
    assert f"{mean:.1f} ±" in text
    # A second call redoes nothing.
    calls = []
    monkeypatch.setattr(repro._runner, "train", lambda *a, **k: calls.append(1))
    repro.reproduce(opts)
    assert calls == []


def test_default_ablation_settings_are_literal_paper_and_converging_tuned(tmp_path, monkeypatch):
    runner = repro._runner.Runner(str(tmp_path), None, {"preset": "tiny"})
    monkeypatch.setattr(runner, "tune_lr", lambda setting, grid: {"best": 1e-3})
    opts = repro.ReproduceOptions(experiments=("ablation",), seeds=2, methods=("mmo-type-shape",))
    plan = repro._experiments.plan_runs(opts, runner)
    assert [(s.setting.name, s.seed, s.learning_rate) for s, _ in plan] == [
        ("literal-paper", 0, 3e-5),
        ("converging-tuned", 0, 1e-3),
        ("literal-paper", 1, 3e-5),
        ("converging-tuned", 1, 1e-3),
    ]
    named = dataclasses.replace(opts, settings=("literal-tuned", "converging-paper"))
    assert {s.setting.name for s, _ in repro._experiments.plan_runs(named, runner)} == {
        "literal-tuned",
        "converging-paper",
    }


@pytest.mark.slow
def test_reproduce_keeps_compiled_executables_in_the_workdir(tmp_path):
    # In a subprocess: the cache is process-wide JAX configuration.
    code = (
        "from mmojax import reproduce as r; r.reproduce(r.ReproduceOptions("
        f"experiments=('ablation',), seeds=1, workdir={str(tmp_path / 'rep')!r}, preset='tiny',"
        " synthetic_train=16, methods=('independent',), settings=('literal-paper',),"
        " progress=False))"
    )
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    assert os.listdir(tmp_path / "rep" / "jax-cache")


def test_stats_against_hand_values():
    s = _stats.summary([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["std"] == 1.0
    assert s["hi"] - s["mean"] == pytest.approx(4.302652729911275 / np.sqrt(3))
    d = _stats.paired([3.0, 4.0, 5.0], [1.0, 1.0, 1.0])  # [2, 3, 4]: CI [0.52, 5.48]
    assert d["mean"] == 3.0
    assert _stats.verdict(d, +1) == "held"
    assert _stats.verdict(d, -1) == "contradicted"
    assert _stats.verdict(_stats.paired([1.0, 0.0], [0.0, 1.0]), +1) == "not supported"
    assert _stats.verdict(_stats.paired([1.0], [0.0]), +1) == "not measured"
    assert _stats.fmt_diff(d, 1.0) == "+3.0 [+0.5, +5.5] (n=3)"
    assert _stats.fmt_diff(_stats.summary([]), 1.0) == "n/a (n=0)"


def test_t_interval_matches_a_plain_numpy_reference():
    # Reference: x_bar +- t_{0.975, n-1} s / sqrt(n), with the t quantile from its
    # definition (bisection on the regularised incomplete beta CDF, via scipy.special).
    from scipy import special

    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 8):
        x = rng.normal(0.3, 2.0, n)
        lo, hi = 0.0, 100.0
        for _ in range(200):  # P(T <= t) = 1 - betainc(df/2, 1/2, df/(df+t^2)) / 2
            mid = (lo + hi) / 2
            cdf = 1 - 0.5 * special.betainc((n - 1) / 2, 0.5, (n - 1) / (n - 1 + mid**2))
            lo, hi = (mid, hi) if cdf < 0.975 else (lo, mid)
        half = lo * x.std(ddof=1) / np.sqrt(n)
        s = _stats.summary(list(x))
        assert s["n"] == n
        np.testing.assert_allclose([s["lo"], s["hi"]], [x.mean() - half, x.mean() + half])
    # None and non-finite values are not counted.
    assert _stats.summary([1.0, None, float("nan"), 3.0])["n"] == 2


def test_mutual_learning_gradient_matches_hand_formula():
    # Two linear "models" on one example; model a's gradient must be that of
    # CE_a + KL(p_b || p_a) with p_b held fixed.
    x = jnp.array([[1.0, -2.0]])
    batch = {"x": x, "labels": jnp.array([1]), "mask": jnp.ones(1)}

    def apply(p, b, train, rng):
        return b["x"] @ p["w"]

    def ce(logits, b):
        loss = -jax.nn.log_softmax(logits)[jnp.arange(1), b["labels"]].mean()
        return loss, {}

    fns = {m: mtrain.ModelFns(apply, ce) for m in ("a", "b")}
    params = {
        "a": {"w": jnp.array([[0.5, -0.1], [0.2, 0.3]])},
        "b": {"w": jnp.array([[-0.3, 0.4], [0.1, -0.2]])},
    }
    tx = mmojax.multi_model_optimizer(
        learning_rate=0.1, alpha=0.0, beta=0.0, adaptive=False, warmup_steps=0, weight_decay=0.0
    )
    extra = _coupling.mutual_learning_loss(weight=1.0, temperature=1.0)
    values, grads = mtrain._step._coupled_grads(fns, extra, params, batch, {"a": None, "b": None})

    def loss_a(w):
        la = x @ w
        lb = x @ params["b"]["w"]
        pb = jax.nn.softmax(lb)
        kl = jnp.sum(pb * (jnp.log(pb) - jax.nn.log_softmax(la)))
        return -jax.nn.log_softmax(la)[0, 1] + kl

    np.testing.assert_allclose(grads["a"]["w"], jax.grad(loss_a)(params["a"]["w"]), rtol=1e-6)
    np.testing.assert_allclose(values["a"][0], loss_a(params["a"]["w"]), rtol=1e-6)
    # With every mechanism off the optimizer is plain AdamW on these coupled gradients.
    updates, _ = tx.update(grads, tx.init(params), params, losses={"a": 0.0, "b": 0.0})
    adamw = optax.adamw(0.1, weight_decay=0.0)
    ref, _ = adamw.update(grads, adamw.init(params), params)
    for m in params:
        np.testing.assert_allclose(updates[m]["w"], ref[m]["w"], rtol=1e-6)


def test_distillation_loss_zero_when_student_matches_teacher():
    logits = jnp.array([[2.0, -1.0], [0.5, 0.5]])
    loss = _coupling.distillation_loss(1.0, 2.0)
    assert float(loss("s", {"s": logits}, {"teacher_logits": logits})) == pytest.approx(
        0.0, abs=1e-7
    )
    assert float(loss("s", {"s": -logits}, {"teacher_logits": logits})) > 0.1


# --- the report's layers on a tiny synthetic index ---------------------------------


def _run(experiment, setting, method, seed, scores, task="ner", metric="f1", **extra):
    """A result.json-like dict with the fields the section builders read."""
    return {
        "run_id": f"{experiment}/{setting}/{method}/lr0.001/seed{seed}",
        "experiment": experiment,
        "setting": setting,
        "method": method,
        "seed": seed,
        "learning_rate": 1e-3,
        "models": list(_specs.MODELS),
        "task": task,
        "main_metric": metric,
        "config": {"max_train": 6000, "preset": "small", "eval_every": 0},
        "final": {m: dict(v) for m, v in scores.items()},
        "final_train_loss": {m: 0.5 for m in _specs.MODELS},
        "collapse": {},
        "gradient_cosines": {},
        "device": "cpu:0",
        "wall_time": 100.0,
        "_dir": "/nonexistent",
        **extra,
    }


def _ner_index():
    # gpt2 gains 10, 12, 14 points under mmo-type-shape; bert loses 3, 4, 5; roberta
    # differs by -1, 0, +1.
    runs = []
    for seed in range(3):
        base = {m: {"f1": 0.5} for m in _specs.MODELS}
        runs.append(_run("tasks", "ner", "independent", seed, base))
        joint = {
            "bert": {"f1": 0.5 - 0.01 * (seed + 3)},
            "gpt2": {"f1": 0.5 + 0.10 + 0.02 * seed},
            "roberta": {"f1": 0.5 + 0.01 * (seed - 1)},
        }
        runs.append(_run("tasks", "ner", "mmo-type-shape", seed, joint))
    return _results.Results(tuple(runs))


def test_tasks_section_paired_differences_and_findings():
    section = _sections.tasks(_ner_index())
    text = "\n".join(section.lines)
    # gpt2: differences [10, 12, 14]: mean 12, std 2, half = 4.3027 * 2 / sqrt(3) = 4.97.
    assert "| gpt2 | mmo-type-shape | 50.0 ± 0.0 [50.0, 50.0] (n=3) |" in text
    assert "+12.0 [+7.0, +17.0] (n=3)" in text
    assert "82.3 / 84.2 (+1.9)" in text  # the paper's numbers beside ours
    assert "No QA runs yet (n=0)." in text and "article split" in text
    by_model = {f.model: f for f in section.findings}
    assert by_model["gpt2"].verdict == "held" and by_model["gpt2"].paper_claim
    assert by_model["bert"].verdict == "contradicted"
    assert by_model["roberta"].verdict == "not supported"
    assert by_model["gpt2"].diff["mean"] == pytest.approx(0.12)
    # SST-2 has no runs: said so, with n.
    assert "### SST-2" in text and "No runs yet (n=0)." in text


def test_qa_block_reports_exact_match_and_f1_with_n():
    runs = []
    for seed in range(2):
        for method, em, f1 in (("independent", 0.1, 0.2), ("mmo-role-depth", 0.1, 0.25)):
            scores = {m: {"exact_match": em, "f1": f1 + 0.01 * seed} for m in _specs.MODELS}
            runs.append(_run("tasks", "qa", method, seed, scores, task="qa"))
    text = "\n".join(_sections.tasks(_results.Results(tuple(runs))).lines)
    assert "### QA: SQuAD v1.1 exact match and F1" in text
    assert "| bert | mmo-role-depth | 10.0 ± 0.0 [10.0, 10.0] (n=2) | 25.5 ± 0.7" in text
    assert "+5.0 [+5.0, +5.0] (n=2)" in text
    assert "| bert | independent |" in text and "| 78.3 |" in text
    assert "How far the models got (independent, 2 seed(s)" in text and "dev loss" not in text


def test_verdicts_table_and_summary_are_computed_from_findings():
    findings = _sections.tasks(_ner_index()).findings
    section = _verdicts.verdicts(findings)
    text = "\n".join(section.lines)
    assert (
        "| mmo-type-shape beats independent (NER, gpt2) | +1.9 | +12.0 [+7.0, +17.0] (n=3) "
        "| **held** |" in text
    )
    assert "Of the paper's 3 claims above, 1 held, 1 were not supported, 1 were " in text
    assert "helps (95% interval above 0) on real tasks: NER gpt2 (mmo-type-shape +12.0" in text
    assert "It hurts (interval below 0): NER bert (mmo-type-shape -4.0" in text
    assert "Grouping: use mmo-type-shape:" in text


def test_grouping_advice_reports_ties():
    advice = _verdicts._grouping_advice(
        {"mmo-role": (1, 0, 0.04, 6), "mmo-role-depth": (1, 0, 0.0401, 6), "x": (2, 1, 0.1, 6)}
    )
    assert advice.startswith("Grouping: use mmo-role or mmo-role-depth (tied)")
    assert "x: 2 gains, 1 loss," in advice


def test_ensemble_scores_by_hand():
    labels = np.array([0, 1, 1, 0])
    a = np.array([[0.9, 0.1], [0.4, 0.6], [0.6, 0.4], [0.6, 0.4]])  # 3/4 right
    b = np.array([[0.6, 0.4], [0.9, 0.1], [0.1, 0.9], [0.7, 0.3]])  # 3/4 right
    # mean: [.75 .25] [.65 .35] [.35 .65] [.65 .35] -> 0 0 1 0: 3/4; a, b disagree on 2 of 4
    assert _diagnostics.ensemble_scores([a, b], labels) == (0.75, 0.75, 0.5)
    runs = tuple(
        _run(
            "ablation",
            "s",
            "independent",
            seed,
            {m: {"accuracy": 1.0} for m in _specs.MODELS},
            task="synthetic",
            metric="accuracy",
        )
        for seed in range(2)
    )
    arrays = {"labels": labels, "probs/bert": a, "probs/gpt2": b, "probs/roberta": a}
    text = "\n".join(_diagnostics.ensembles(_results.Results(runs), lambda r: arrays).lines)
    assert "| s | independent | 75.0% | 75.0% | 33.3% | 2 |" in text


def test_task_settings_plan_their_methods_and_reuse_the_sst2_lr(tmp_path, monkeypatch):
    runner = repro._runner.Runner(str(tmp_path), str(tmp_path), {"preset": "tiny"})
    for folder in ("sst2", "squad"):
        os.makedirs(tmp_path / folder)
    tuned = []
    monkeypatch.setattr(runner, "tune_lr", lambda s, grid: tuned.append(s.name) or {"best": 1e-3})
    opts = repro.ReproduceOptions(
        experiments=("tasks",),
        seeds=2,
        methods=("mmo-type-shape", "mmo-role-depth"),
        settings=("qa", "sst2-20k"),
        max_train=600,
    )
    plan = [s for s, _ in repro._experiments.plan_runs(opts, runner)]
    qa = [s for s in plan if s.setting.name == "qa"]
    more = [s for s in plan if s.setting.name == "sst2-20k"]
    assert {s.method for s in qa} == {"independent", "mmo-type-shape", "mmo-role-depth"}
    assert {s.method for s in more} == {"independent", "mmo-role-depth"}
    assert [s.seed for s in more] == [0, 0, 1, 1]  # seeds outermost: pairs finish together
    assert more[0].setting.overrides["max_train"] == 20_000  # not --max-train
    assert qa[0].setting.overrides["max_train"] == _specs.QA_MAX_TRAIN
    assert set(tuned) == {"qa", "sst2"}  # sst2-20k reuses the lr tuned for sst2
    # sst2-20k runs only when named.
    default = dataclasses.replace(opts, settings=None)
    assert "sst2-20k" not in {
        s.setting.name for s, _ in repro._experiments.plan_runs(default, runner)
    }


def test_recorded_paths_are_relative_to_the_workdir(tmp_path):
    workdir = str(tmp_path / "rep")
    cfg = {
        "workdir": os.path.join(workdir, "runs", "tasks", "x"),
        "data": str(tmp_path / "data" / "sst2"),
        "teacher_logits": None,
        "seed": 0,
    }
    out = repro._runner.portable_config(cfg, workdir)
    assert out["workdir"] == os.path.join("runs", "tasks", "x")
    assert out["data"] == os.path.join("..", "data", "sst2")
    assert out["seed"] == 0 and cfg["workdir"].startswith("/")  # a copy
    opts = repro.ReproduceOptions(
        experiments=("tasks",), workdir=workdir, data_dir=str(tmp_path / "data")
    )
    recorded = repro._experiments.portable_options(opts)
    assert recorded["workdir"] == "." and recorded["data_dir"] == os.path.join("..", "data")
    assert not any(isinstance(v, str) and v.startswith(str(tmp_path)) for v in recorded.values())


def test_results_load_indexes_runs_and_reads_their_arrays(tmp_path):
    for seed in (0, 1):
        run = _run(
            "tasks", "ner", "independent", seed, {m: {"f1": 0.1 * seed} for m in _specs.MODELS}
        )
        run.pop("_dir")
        d = tmp_path / "runs" / run["run_id"]
        os.makedirs(d)
        json.dump(run, open(d / "result.json", "w"))
        np.savez_compressed(d / "arrays.npz", labels=np.arange(3) + seed)
    os.makedirs(tmp_path / "tuning")
    json.dump(
        {"setting": "ner", "best": 1e-3, "scores": {}}, open(tmp_path / "tuning" / "ner.json", "w")
    )
    results = _results.load(str(tmp_path))
    assert len(results.runs) == 2 and results.tuning["ner"]["best"] == 1e-3
    assert results.settings("tasks") == ["ner"]
    assert results.values("tasks", "ner", "independent", "gpt2") == {0: 0.0, 1: 0.1}
    assert results.values("tasks", "ner", "mmo-role", "gpt2") == {}
    np.testing.assert_array_equal(_results.arrays(results.runs[1])["labels"], [1, 2, 3])
    assert _results.paired_values({0: 1.0, 1: None, 2: 3.0}, {0: 0.5, 2: 1.0, 3: 9.0}) == (
        [1.0, 3.0],
        [0.5, 1.0],
    )


def test_more_data_block_sets_the_20k_difference_beside_the_smaller_one():
    runs = []
    for seed in range(2):
        for setting, gain in (("sst2", 0.02), ("sst2-20k", 0.04)):
            runs.append(
                _run(
                    "tasks",
                    setting,
                    "independent",
                    seed,
                    {m: {"accuracy": 0.7} for m in _specs.MODELS},
                    task="sst2",
                    metric="accuracy",
                )
            )
            scores = {m: {"accuracy": 0.7 + gain + 0.01 * seed} for m in _specs.MODELS}
            runs.append(
                _run(
                    "tasks", setting, "mmo-role-depth", seed, scores, task="sst2", metric="accuracy"
                )
            )
    section = _sections.tasks(_results.Results(tuple(runs)))
    text = "\n".join(section.lines)
    assert "### More data: SST-2 with 20,000 training sentences" in text
    assert "| bert | mmo-role-depth | 70.0 ± 0.0 [70.0, 70.0] (n=2) | 74.5 ± 0.7" in text
    assert "| +4.5 [-1.9, +10.9] (n=2) | +2.5 [-3.9, +8.9] (n=2) |" in text
    more = [f for f in section.findings if f.task == "sst2-20k"]
    assert len(more) == 3 and not any(f.paper_claim for f in more)


def test_tune_lr_completes_a_stored_search_missing_rates_of_its_grid(tmp_path, monkeypatch):
    runner = repro._runner.Runner(str(tmp_path), None, {"preset": "tiny"})
    ran = []

    def fake_run(spec, holdout):
        ran.append(spec.learning_rate)
        score = {1e-3: 0.2, 3e-3: 0.5, 1e-2: 0.7}[spec.learning_rate]
        models = list(spec.models)
        final = {m: {"f1": score, "loss": 1.0 - score} for m in models}
        return {"main_metric": "f1", "models": models, "final": final}

    monkeypatch.setattr(runner, "run", fake_run)
    base = repro._specs.Setting("qa", "qa", {}, "tuned", "")
    first = runner.tune_lr(base, (1e-3, 3e-3))
    assert ran == [1e-3, 3e-3] and first["best"] == 3e-3
    assert runner.tune_lr(base, (1e-3, 3e-3)) == first and len(ran) == 2  # stored
    wider = dataclasses.replace(base, lr_grid=(1e-3, 3e-3, 1e-2))
    out = runner.tune_lr(wider, (1e-3, 3e-3))  # the setting's grid wins over the experiment's
    assert out["best"] == 1e-2 and set(out["scores"]) == {"0.001", "0.003", "0.01"}
    assert repro._specs.task_settings(6000)[2].lr_grid == repro._specs.LR_GRID + (1e-2,)


def test_results_index_keeps_the_run_at_the_tuned_lr_when_a_seed_ran_at_two():
    def run(lr):
        return {
            "run_id": f"tasks/qa/independent/lr{lr:g}/seed0",
            "experiment": "tasks",
            "setting": "qa",
            "method": "independent",
            "models": list(_specs.MODELS),
            "seed": 0,
            "learning_rate": lr,
        }

    both = (run(3e-3), run(1e-2))
    res = _results.Results(both, {"qa": {"best": 1e-2}})
    assert res.index("tasks")[("qa", "independent", _specs.MODELS)][0]["learning_rate"] == 1e-2
    with pytest.raises(ValueError, match="two learning rates"):
        _results.Results(both, {"qa": {"best": 1e-3}}).index("tasks")


@pytest.mark.parametrize("f1, floor", [(0.03, True), (0.4, False)])
def test_qa_block_says_when_the_models_are_at_the_floor(f1, floor):
    final = {m: {"f1": f1, "exact_match": 0.0, "loss": 7.0} for m in _specs.MODELS}
    run = {
        "run_id": "tasks/qa/independent/lr0.003/seed0",
        "experiment": "tasks",
        "setting": "qa",
        "method": "independent",
        "models": list(_specs.MODELS),
        "seed": 0,
        "learning_rate": 3e-3,
        "final": final,
        "final_train_loss": {m: 4.0 for m in _specs.MODELS},
    }
    tuning = {"qa": {"best": 3e-3, "scores": {"0.003": 0.14}}}
    lines, at_floor = _sections._qa_floor(_results.Results((run,), tuning))
    text = " ".join(lines)
    assert at_floor == floor
    assert f"dev F1 {100 * f1:.1f}" in text and "against 4.00" in text and "F1 14.0" in text
    assert ("at the floor" in text) == floor


def test_budget_table_sums_wall_time_per_experiment_and_setting():
    def run(seed, minutes, load):
        return {
            "experiment": "tasks",
            "setting": "ner",
            "models": list(_specs.MODELS),
            "config": {"max_train": 6000},
            "wall_time": 60.0 * minutes,
            "device": "cpu:0",
            "load_average": load,
            "seed": seed,
        }

    lines = _diagnostics.budget(_results.Results((run(0, 2.0, [1.0]), run(1, 4.0, None)))).lines
    text = "\n".join(lines)
    assert "| tasks / ner | 3 models | 6,000 | 2 | 3.0 (2.0-4.0) | 6 | 1.0 (n=1) |" in text
    assert "In all: 2 runs, 6 minutes." in text


def test_findings_at_the_floor_are_marked_and_left_out_of_the_grouping_advice():
    findings = list(_sections.tasks(_ner_index()).findings)
    floor = findings[0]._replace(
        task="qa", model="roberta", method="mmo-role", claim="QA roberta", at_floor=True
    )
    text = "\n".join(_verdicts.verdicts([*findings, floor]).lines)
    assert "(models at the floor)" in text
    assert "models at the floor, not evidence either way" in text
    assert "mmo-role:" not in text.split("Grouping:")[1]  # its only comparison was at the floor
    assert "QA left out: models at the floor)." in text
