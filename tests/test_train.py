"""Training end to end: one-jit step, non-finite handling, checkpoints, exact resume, CLI."""

import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mmojax
from mmojax import data as mdata
from mmojax import train as mtrain
from mmojax.cli import main as cli_main


def tiny_config(tmp_path, name="run", **kw):
    base = dict(
        task="synthetic",
        preset="tiny",
        workdir=str(tmp_path / name),
        epochs=2,
        batch_size=8,
        gradient_accumulation_steps=2,
        learning_rate=1e-3,
        warmup_steps=2,
        sync_every=2,
        convergence_window=3,
        convergence_update_every=2,
        max_train=64,
        max_val=24,
        log_every=3,
        progress=False,
    )
    base.update(kw)
    return mtrain.TrainConfig(**base)


def leaves_close(a, b, atol=1e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=atol)


@pytest.mark.slow
def test_resume_is_exact(tmp_path):
    k = 3  # optimizer updates: 6 micro-batches
    full = mtrain.train(tiny_config(tmp_path, "full", max_steps=2 * k))
    first = mtrain.train(tiny_config(tmp_path, "split", max_steps=k))
    assert (first.steps, first.updates) == (2 * k, k)  # max_steps counts optimizer updates
    # The two runs really differ before resuming ...
    assert any(
        not np.allclose(x, y)
        for x, y in zip(jax.tree.leaves(first.state.params), jax.tree.leaves(full.state.params))
    )
    resumed = mtrain.train(tiny_config(tmp_path, "split", max_steps=2 * k), resume=True)
    assert resumed.updates == 2 * k
    # ... and agree after: params, optimizer state, rng and counters.
    leaves_close(resumed.state, full.state)


@pytest.mark.slow
def test_independent_joint_equals_models_trained_alone(tmp_path):
    joint = mtrain.train(
        tiny_config(tmp_path, "joint", mode="independent", max_steps=4, models=("bert", "gpt2"))
    )
    alone = mtrain.train(
        tiny_config(tmp_path, "alone", mode="independent", max_steps=4, models=("gpt2",))
    )
    leaves_close(joint.state.params["gpt2"], alone.state.params["gpt2"], atol=1e-6)
    # ... and training really moved them: after 1 update they are elsewhere than after 4.
    early = mtrain.train(
        tiny_config(tmp_path, "early", mode="independent", max_steps=1, models=("gpt2",))
    )
    assert any(
        not np.allclose(x, y)
        for x, y in zip(
            jax.tree.leaves(early.state.params["gpt2"]), jax.tree.leaves(alone.state.params["gpt2"])
        )
    )


@pytest.mark.parametrize("accumulate", [1, 2])
def test_nonfinite_model_is_skipped_and_counted(accumulate):
    good = mtrain.ModelFns(
        lambda p, b, train, rng: b["x"] @ p["mlp"]["kernel"],
        lambda out, b: (jnp.mean((out - b["y"]) ** 2), {}),
    )
    bad = mtrain.ModelFns(
        lambda p, b, train, rng: b["x"] @ p["mlp"]["kernel"],
        lambda out, b: (jnp.mean(out) * jnp.nan, {}),
    )
    params = {
        "good": {"mlp": {"kernel": jnp.ones((3, 1))}},
        "bad": {"mlp": {"kernel": jnp.ones((3, 1))}},
    }
    # Without accumulation the gradients are zeroed by a conditional, with it by a select.
    tx = mmojax.multi_model_optimizer(
        learning_rate=0.1, warmup_steps=0, sync_every=1, gradient_accumulation_steps=accumulate
    )
    state = mtrain.init_train_state(params, tx, seed=0)
    step = mtrain.make_train_step({"good": good, "bad": bad}, tx)
    batch = {"x": jnp.ones((4, 3)), "y": jnp.zeros((4, 1))}
    calls = 2 * accumulate  # two optimizer updates
    for _ in range(calls):
        state, metrics = step(state, batch)
    np.testing.assert_array_equal(state.params["bad"]["mlp"]["kernel"], jnp.ones((3, 1)))
    assert not np.allclose(state.params["good"]["mlp"]["kernel"], 1.0)
    assert np.isfinite(np.asarray(state.params["good"]["mlp"]["kernel"])).all()
    # No NaN reached the optimizer state (moments, accumulators) of either model.
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.opt_state))
    assert int(state.nonfinite["bad"]) == calls and int(state.skipped["bad"]) == calls
    assert int(state.nonfinite["good"]) == 0
    assert not bool(metrics["bad"]["finite"]) and bool(metrics["good"]["finite"])


def test_an_accumulating_step_equals_the_optax_path_and_skips_the_update_between():
    fns = mtrain.ModelFns(
        lambda p, b, train, rng: jnp.tanh(b["x"] @ p["mlp"]["kernel"]),
        lambda out, b: (jnp.mean((out - b["y"]) ** 2), {}),
    )
    params = {
        m: {"mlp": {"kernel": jax.random.normal(jax.random.PRNGKey(i), (3, 2))}}
        for i, m in enumerate("ab")
    }
    tx = mmojax.multi_model_optimizer(
        learning_rate=0.1, warmup_steps=0, sync_every=2, gradient_accumulation_steps=3
    )
    # The same optimizer, unknown to update_or_accumulate: the optax path.
    plain = optax.GradientTransformationExtraArgs(lambda p: tx.init(p), tx.update)
    assert mmojax.accumulation_steps(tx) == 3 and mmojax.accumulation_steps(plain) == 1
    out = {}
    for name, t in (("cond", tx), ("optax", plain)):
        state = mtrain.init_train_state(params, t, seed=0)
        step = mtrain.make_train_step({"a": fns, "b": fns}, t)
        kernels = []
        for i in range(8):  # updates on micro-batches 3 and 6 (1-based)
            x = jax.random.normal(jax.random.PRNGKey(10 + i), (4, 3))
            state, _ = step(state, {"x": x, "y": jnp.sin(x[:, :2])})
            kernels.append(np.asarray(state.params["a"]["mlp"]["kernel"]))
        out[name] = (state, kernels)
    (got, got_k), (ref, ref_k) = out["cond"], out["optax"]
    for k, r in zip(got_k, ref_k):  # after every micro-batch, not only at the end
        np.testing.assert_allclose(k, r, rtol=0, atol=1e-6)
    leaves_close(got.params, ref.params)
    leaves_close(got.opt_state, ref.opt_state)
    changed = [
        not np.array_equal(k, prev)
        for prev, k in zip([params["a"]["mlp"]["kernel"]] + got_k, got_k)
    ]
    assert changed == [False, False, True, False, False, True, False, False]


@pytest.mark.slow
def test_run_stops_on_persistent_nonfinite_and_checkpoints_finite_state(tmp_path):
    config = tiny_config(
        tmp_path,
        "nan",
        learning_rate=1e30,
        warmup_steps=0,
        clip_norm=None,
        max_nonfinite=2,
        log_every=1,
        gradient_accumulation_steps=1,
    )
    with pytest.raises(mtrain.NonFiniteError, match="non-finite") as info:
        mtrain.train(config)
    # The advice is something a user can do: resuming keeps the learning rate.
    assert "Start a new run" in str(info.value) and "--learning-rate" in str(info.value)
    assert (tmp_path / "nan" / "metrics.jsonl").read_text().count('"nonfinite"') >= 1
    ckpt = mtrain.Checkpointer(tmp_path / "nan" / "checkpoints")
    assert ckpt.steps()
    ckpt.close()


def test_step_compiles_once_per_bucket():
    task = mtrain.prepare_task("synthetic", seed=0, max_train=128, max_val=16, buckets=(8, 16, 32))
    from mmojax import models as mmodels

    built = mmodels.build_models(
        "bert,gpt2",
        preset="tiny",
        vocab_size=task.tokenizer.get_vocab_size(),
        max_length=task.max_length,
        num_labels=2,
    )
    fns = {
        m: mtrain.ModelFns(b.apply_fn, mtrain._tasks.loss_fn("classification"))
        for m, b in built.items()
    }
    tx = mmojax.multi_model_optimizer(learning_rate=1e-3, warmup_steps=0)
    traces = []
    raw_step = mtrain.make_train_step(fns, tx, jit=False)
    step = jax.jit(
        lambda s, b: (traces.append(b["input_ids"].shape), raw_step(s, b))[1], donate_argnums=0
    )
    state = mtrain.init_train_state({m: b.params for m, b in built.items()}, tx, 0)
    batches = mdata.BatchIterator(task.train, 4, seed=0)
    widths = set()
    for batch in batches.epoch_batches():
        widths.add(batch["input_ids"].shape[1])
        state, _ = step(state, batch)
    assert widths <= {8, 16, 32}
    assert len(traces) == len(widths)


def test_corrupt_latest_checkpoint_falls_back(tmp_path, caplog):
    ckpt = mtrain.Checkpointer(tmp_path / "ck", keep=3)
    state = {"w": np.arange(4.0), "n": np.int32(3)}
    ckpt.save(1, state, {"position": {"epoch": 0, "index": 1}})
    ckpt.save(
        2, {"w": np.arange(4.0) + 10, "n": np.int32(4)}, {"position": {"epoch": 0, "index": 2}}
    )
    # Corrupt every data file of the latest checkpoint.
    for root, _, files in os.walk(tmp_path / "ck" / "2"):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"garbage")
    restored, meta, step = ckpt.restore(state)
    assert step == 1 and meta["position"]["index"] == 1
    np.testing.assert_array_equal(restored["w"], np.arange(4.0))
    assert "could not be restored" in caplog.text and "moved" in caplog.text
    assert ckpt.steps() == [1] and (tmp_path / "ck-unusable" / "2").is_dir()
    ckpt.save(2, state, {})  # the step can be saved again
    assert ckpt.steps() == [1, 2]
    ckpt.close()


def test_checkpoints_of_gpt2_held_out_in_are_refused(tmp_path):
    ckpt = mtrain.Checkpointer(tmp_path / "ck")
    ckpt.save(1, {"w": np.zeros(3)}, {"position": 1})  # an earlier mmojax's: no layout entry
    ckpt.check_layout(holds_gpt2=False)  # nothing to check without a GPT-2
    with pytest.raises(mtrain.CheckpointError, match=r"checkpoint 1 .*\(out, in\).*nothing was"):
        ckpt.check_layout(holds_gpt2=True)
    ckpt.save(2, {"w": np.zeros(3)}, {"gpt2_conv1d_kernels": "in_out"})
    with pytest.raises(mtrain.CheckpointError, match="checkpoint 1 "):
        ckpt.check_layout(holds_gpt2=True)  # every step is looked at
    assert ckpt.steps() == [1, 2]  # nothing moved aside
    assert ckpt.meta(2) == {"gpt2_conv1d_kernels": "in_out"}
    ckpt.close()


@pytest.mark.slow
def test_resuming_a_run_saved_with_gpt2_held_out_in_is_refused(tmp_path, monkeypatch):
    from mmojax.train import _checkpoint
    from mmojax.train._inference import export_workdir

    config = tiny_config(tmp_path, "old", models=("bert", "gpt2"), max_steps=1)
    monkeypatch.setattr(_checkpoint, "LAYOUT", "out_in")  # as an earlier mmojax saved it
    mtrain.train(config)
    monkeypatch.undo()
    saved = sorted(os.listdir(tmp_path / "old" / "checkpoints"))
    with pytest.raises(mtrain.CheckpointError, match=r"\(out, in\)"):
        mtrain.train(
            tiny_config(tmp_path, "old", models=("bert", "gpt2"), max_steps=2), resume=True
        )
    assert sorted(os.listdir(tmp_path / "old" / "checkpoints")) == saved
    with pytest.raises(mtrain.CheckpointError, match=r"\(out, in\)"):
        export_workdir(str(tmp_path / "old"))


def test_restore_with_wrong_structure_is_reported(tmp_path):
    ckpt = mtrain.Checkpointer(tmp_path / "ck2")
    ckpt.save(1, {"w": np.zeros(3)}, {})
    with pytest.raises(mtrain.CheckpointError, match="expected"):
        ckpt.restore({"w": np.zeros(5)})
    ckpt.close()


@pytest.mark.slow
def test_interrupt_saves_and_resumes(tmp_path, monkeypatch):
    """A real SIGINT during micro-batch 3 (inside an accumulation window of 2):
    the run finishes that step, saves it and stops; the resumed run is exact."""
    config = tiny_config(tmp_path, "intr", max_steps=3)
    real = mtrain._loop._step.make_train_step

    def interrupting(*args, **kwargs):
        step = real(*args, **kwargs)
        calls = []

        def wrapped(state, batch):
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGINT)
            return step(state, batch)

        return wrapped

    monkeypatch.setattr(mtrain._loop._step, "make_train_step", interrupting)
    with pytest.raises(mtrain.Interrupted) as info:
        mtrain.train(config)
    assert info.value.saved and info.value.signal_name == "SIGINT"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    monkeypatch.setattr(mtrain._loop._step, "make_train_step", real)
    ckpt = mtrain.Checkpointer(tmp_path / "intr" / "checkpoints")
    assert ckpt.steps() == [3]
    ckpt.close()
    resumed = mtrain.train(config, resume=True)
    full = mtrain.train(tiny_config(tmp_path, "intr_full", max_steps=3))
    leaves_close(resumed.state.params, full.state.params)


@pytest.mark.slow
def test_cli_train_and_errors(tmp_path, capsys):
    code = cli_main(
        [
            "train",
            "--task",
            "synthetic",
            "--preset",
            "tiny",
            "--workdir",
            str(tmp_path / "cli"),
            "--max-train",
            "32",
            "--max-val",
            "16",
            "--batch-size",
            "8",
            "--epochs",
            "1",
            "--no-progress",
            "--learning-rate",
            "1e-3",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "accuracy" in out and "bert" in out and "roberta" in out and "loss.png" in out
    assert os.path.exists(tmp_path / "cli" / "tokenizer.json")
    code = cli_main(
        [
            "train",
            "--task",
            "sst2",
            "--data",
            str(tmp_path / "missing"),
            "--workdir",
            str(tmp_path / "bad"),
            "--no-progress",
        ]
    )
    assert code == 2 and "missing" in capsys.readouterr().err
    code = cli_main(["train", "--alpha", "2", "--workdir", str(tmp_path / "bad2")])
    assert code == 2 and "alpha must be in [0, 1]" in capsys.readouterr().err


def test_train_config_validation():
    with pytest.raises(ValueError, match="mode must be one of"):
        mtrain.TrainConfig(mode="fast")
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        mtrain.TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="unknown config fields"):
        mtrain.TrainConfig.from_dict({"epochz": 1})


def test_every_process_stops_on_the_signal_of_any_of_them():
    from mmojax.train import _interrupt

    quiet, signalled = _interrupt.StopRequest(), _interrupt.StopRequest()
    signalled.signal_name = "SIGTERM"
    both = [quiet, signalled]

    def gather_with(*others):  # this process's value beside the others'
        return lambda own: np.stack([own, *[np.int32(o) for o in others]])

    term = int(signal.SIGTERM)
    assert _interrupt.agreed_stop(quiet, gather_with(0)) is None
    assert _interrupt.agreed_stop(quiet, gather_with(term)) == "SIGTERM"  # another got it
    assert _interrupt.agreed_stop(signalled, gather_with(0)) == "SIGTERM"
    assert _interrupt.agreed_stop(quiet, gather_with(0, int(signal.SIGINT), term)) == "SIGINT"
    assert [_interrupt.agreed_stop(s) for s in both] == [None, "SIGTERM"]  # one process
