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
from mmojax.reproduce import _stats
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
    assert "## 6. Collapse diagnostics" in text and "## 8. What we found" in text
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
    assert _stats.verdict(_stats.paired([1.0, 0.0], [0.0, 1.0]), +1).startswith("not supported")


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
