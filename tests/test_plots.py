"""The metrics file (mmojax.train._metrics) and the plots drawn from it (mmojax.train._plots)."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from mmojax.train import _metrics, _plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _train(update, models, lr_scale=1.0):
    return {
        "kind": "train",
        "step": 2 * update,
        "update": update,
        "epoch": update / 50,
        "time": 0.1 * update,
        "models": {
            m: {
                "loss": 2.0 * math.exp(-update / 30) + 0.05 * ((update * (i + 3)) % 7) / 7,
                "accuracy": 0.5,
                "lr": lr_scale * 1e-3 * min(1.0, (update + 1) / 10),
                "conv_rate": None if update < 20 else 0.9,
                "grad_norm": 1.0,
            }
            for i, m in enumerate(models)
        },
    }


def _eval(update, models, f1_for=()):
    out = {}
    for m in models:
        out[m] = {"loss": 1.5 * math.exp(-update / 40), "accuracy": 0.5 + update / 400}
        if m in f1_for:
            out[m]["f1"] = 40.0 + update / 5
    return {
        "kind": "eval",
        "step": 2 * update,
        "update": update,
        "epoch": update / 50,
        "time": 0.1 * update,
        "models": out,
    }


def _records(models=("bert", "gpt2"), f1_for=("bert",)):
    recs = [_train(u, models) for u in range(0, 100)]
    recs += [_eval(u, models, f1_for) for u in range(0, 101, 20)]
    recs.append(
        {
            "kind": "event",
            "step": 40,
            "event": "nonfinite",
            "model": "bert",
            "message": "loss is nan",
        }
    )
    recs.append({"kind": "something_new", "payload": [1, 2]})
    return recs


def _assert_png(path):
    assert path.exists()
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 1024


def test_plot_run_writes_all_figures(tmp_path):
    out = _plots.plot_run(_records(), tmp_path / "plots", title="toy run")
    assert set(out) == {"loss", "accuracy", "learning_rate"}
    for name, path in out.items():
        assert path.name == f"{name}.png"
        assert path.parent == tmp_path / "plots"
        _assert_png(path)


def test_plot_run_from_file_round_trip(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps(r) for r in _records()]
    lines.insert(3, "")  # blank lines are skipped
    path.write_text("\n".join(lines) + "\n\n")
    assert _metrics.read_metrics(path) == _records()
    out = _plots.plot_run(str(path), tmp_path)
    assert set(out) == {"loss", "accuracy", "learning_rate"}


def test_plot_run_skips_missing_eval(tmp_path):
    recs = [r for r in _records() if r["kind"] != "eval"]
    out = _plots.plot_run(recs, tmp_path)
    assert set(out) == {"loss", "learning_rate"}
    assert not (tmp_path / "accuracy.png").exists()
    _assert_png(out["loss"])


def test_plot_run_eval_only(tmp_path):
    recs = [r for r in _records() if r["kind"] == "eval"]
    out = _plots.plot_run(recs, tmp_path)
    assert set(out) == {"loss", "accuracy"}  # no train lr
    _assert_png(out["accuracy"])


def test_plot_run_no_data(tmp_path):
    recs = [{"kind": "event", "step": 1, "event": "nonfinite", "model": "a", "message": "x"}]
    assert _plots.plot_run(recs, tmp_path) == {}
    assert _plots.plot_run([], tmp_path) == {}
    assert list(tmp_path.glob("*.png")) == []


def test_nonfinite_and_null_values_are_dropped(tmp_path):
    recs = _records()
    recs[5]["models"]["bert"]["loss"] = float("nan")
    recs[6]["models"]["bert"]["lr"] = None
    del recs[7]["models"]["gpt2"]["loss"]
    s = _metrics.series(recs, "train", "loss")
    assert len(s["bert"][1]) == 99 and len(s["gpt2"][1]) == 99
    assert len(_metrics.series(recs, "train", "lr")["bert"][1]) == 99
    assert "loss" in _plots.plot_run(recs, tmp_path)


def test_main_metric_prefers_f1():
    recs = _records(f1_for=("bert",))
    assert _metrics.main_metric(recs, "bert") == "f1"
    assert _metrics.main_metric(recs, "gpt2") == "accuracy"
    assert _metrics.main_metric(recs, "missing") is None
    main = _metrics.series(recs, "eval", "main")
    assert main["bert"][1][0] == pytest.approx(40.0)
    assert main["gpt2"][1][0] == pytest.approx(0.5)


def test_learning_rate_log_scale_only_for_wide_range(tmp_path):
    flat = [_train(u, ("a",)) for u in range(20, 40)]  # constant lr after warmup
    wide = [_train(u, ("a",)) for u in range(0, 40)]
    for recs in (flat, wide):
        _assert_png(_plots.plot_run(recs, tmp_path)["learning_rate"])


def test_smooth():
    values = [1.0, 3.0, 5.0, 7.0]
    assert _plots.smooth(values, window=2).tolist() == [1.0, 2.0, 4.0, 6.0]
    assert _plots.smooth(values, window=1).tolist() == values
    assert len(_plots.smooth(list(range(1000)))) == 1000


def test_weighted_smoothing_ignores_a_short_record():
    # 20 records of 20 micro-batches each at loss 1, one of a single micro-batch at 5
    # (an epoch's remainder): it counts for one micro-batch, not for a whole record.
    values = np.array([1.0] * 10 + [5.0] + [1.0] * 10)
    weights = np.array([20.0] * 10 + [1.0] + [20.0] * 10)
    plain = _plots.smooth(values, window=5)
    weighted = _plots.smooth(values, window=5, weights=weights)
    assert plain.max() == pytest.approx(1.8)
    assert weighted.max() == pytest.approx(1 + 4 / 81)
    recs = [_train(u, ("a",)) | {"micro_batches": 20} for u in range(5)]
    _, _, w = _metrics.weighted_series(recs, "train", "loss")["a"]
    assert w.tolist() == [20.0] * 5


def test_summarise_means_last_rates_and_nonfinite_counts():
    rows = [
        {"a": {"loss": 1.0, "lr": 0.1, "finite": True}},
        {"a": {"loss": float("nan"), "lr": 0.2, "finite": False}},
        {"a": {"loss": 3.0, "lr": 0.3, "finite": True}},
    ]
    assert _metrics.summarise(rows) == {"a": {"loss": 2.0, "lr": 0.3, "nonfinite_steps": 1}}


def test_writer_keeps_records_up_to_a_resumed_step(tmp_path):
    path = tmp_path / "m.jsonl"
    writer = _metrics.MetricsWriter(path)
    for step in (2, 4, 6):
        writer.write({"kind": "train", "step": step, "models": {"a": {"loss": np.float32(1)}}})
    _metrics.MetricsWriter(path, keep_until_step=4).write({"kind": "event", "step": 4})
    assert [r["step"] for r in _metrics.read_metrics(path)] == [2, 4, 4]


def test_metrics_file_has_one_home():
    from mmojax.reproduce import _runner

    assert not hasattr(_runner, "_plots")  # the reproduction parses runs without the plots
    for name in ("read_metrics", "series", "main_metric", "model_names"):
        # the plots module draws; what it reads comes from _metrics
        assert getattr(_plots, name, getattr(_metrics, name)) is getattr(_metrics, name)


def test_read_metrics_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad_metrics.jsonl"
    path.write_text(json.dumps(_train(0, ("a",))) + "\n\n" + '{"kind": "train", "step": \n')
    with pytest.raises(ValueError, match=r"bad_metrics\.jsonl:3") as info:
        _metrics.read_metrics(path)
    assert str(path) in str(info.value)
    assert "line" in str(info.value).lower() or ":3:" in str(info.value)


def test_read_metrics_non_object_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"kind": "eval"}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"m\.jsonl:2: expected a JSON object"):
        _metrics.read_metrics(path)


def test_read_metrics_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        _metrics.read_metrics(tmp_path / "nope.jsonl")


@pytest.mark.parametrize(
    "kind, metric", [("train", "loss"), ("eval", "accuracy"), ("eval", "main")]
)
def test_plot_comparison(tmp_path, kind, metric):
    mmo = _records(models=("bert", "gpt2", "roberta"))
    indep = _records(models=("bert", "gpt2"))  # a model missing from one run is fine
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in indep))
    out = _plots.plot_comparison(
        {"mmo": mmo, "independent": path}, tmp_path / "cmp", metric=metric, kind=kind
    )
    assert out == tmp_path / "cmp" / f"compare_{kind}_{metric}.png"
    _assert_png(out)


def test_plot_comparison_filename_and_errors(tmp_path):
    recs = _records()
    out = _plots.plot_comparison({"a": recs}, tmp_path, filename="loss_curves.png")
    assert out.name == "loss_curves.png"
    _assert_png(out)
    with pytest.raises(ValueError, match="empty"):
        _plots.plot_comparison({}, tmp_path)
    with pytest.raises(ValueError, match="kind"):
        _plots.plot_comparison({"a": recs}, tmp_path, kind="test")
    with pytest.raises(ValueError, match="exact_match"):
        _plots.plot_comparison({"a": recs}, tmp_path, metric="exact_match", kind="eval")


def test_import_and_plot_leave_matplotlib_global_state_alone(tmp_path):
    code = (
        "import sys, matplotlib\n"
        # dict.__getitem__: reading rcParams['backend'] would itself resolve it.
        "before = dict.__getitem__(matplotlib.rcParams, 'backend')\n"
        "from mmojax.train import _plots\n"
        f"_plots.plot_run({_records()!r}, {str(tmp_path)!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "assert dict.__getitem__(matplotlib.rcParams, 'backend') == before\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
