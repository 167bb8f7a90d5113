"""Smoke tests of benchmarks/bench_scale.py: it parses, reads HLO collectives, and runs end to end.

Nothing here checks a timing: tiny sizes, one round, just the rows and the JSON.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_scale.py"
TINY = ["--hidden", "16", "--layers", "1", "--seq", "8", "--batch", "4", "--vocab", "32"]
ONE_ROUND = ["--rounds", "1", "--warmup", "0"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_scale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_collective_stats_reads_the_replica_group_formats(bench):
    hlo = "\n".join(
        [
            "%a = f32[64,32]{1,0} all-reduce(%x), channel_id=1, "
            "replica_groups=mesh['axis_0'=4] {'axis_0'}, to_apply=%add",
            "%b = f32[4,64,32]{2,1,0} all-gather(%y), channel_id=2, "
            "replica_groups=mesh['axis_0'=2,'axis_1'=2] {'axis_0'}, dimensions={0}",
            "%c = (f32[8]{0}, bf16[8]{0}) all-reduce(%p, %q), replica_groups=[2,2]<=[4]",
            "%d = f32[16]{0} collective-permute(%z), source_target_pairs={{0,1},{1,0}}",
            "%e = f32[16]{0} add(%z, %z)",
        ]
    )
    stats = bench.collective_stats(hlo, devices=4)
    assert stats["all-reduce"] == {
        "count": 2,
        "result_bytes": 64 * 32 * 4 + 8 * 4 + 8 * 2,
        "sent_bytes": int(1.5 * 64 * 32 * 4) + int(1.0 * (8 * 4 + 8 * 2)),
    }
    assert stats["all-gather"] == {
        "count": 1,
        "result_bytes": 4 * 64 * 32 * 4,
        "sent_bytes": 4 * 64 * 32 * 4 // 2,
    }
    assert stats["collective-permute"]["sent_bytes"] == 64
    assert bench.describe({}) == "none"


def test_quick_fills_unset_sizes_and_flags_are_checked(bench):
    args = bench.parse_args(["--quick", "--hidden", "48"])
    assert args.hidden == 48 and args.rounds == 2 and args.counts == [1, 2, 4]
    assert args.meshes == ["model=4,data=1", "model=2,data=2"]
    full = bench.parse_args([])
    assert full.counts == [1, 2, 4, 8, 16] and full.layers == 2
    for bad in (["--steps", "5"], ["--sections", "scale,nope"], ["--meshes", "rows=2"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


def test_collectives_section_runs_in_process(bench, tmp_path, capsys):
    out = tmp_path / "c.json"
    argv = ["--quick", *TINY, *ONE_ROUND, "--sections", "collectives", "--mesh-models", "2"]
    results = bench.main([*argv, "--meshes", "model=2,data=1", "--json", str(out)])
    text = capsys.readouterr().out
    for row in ("device:", "settings:", "=== 3. collectives", "pool 1 device", "mix 1 device"):
        assert row in text
    assert "pool model=2,data=1" in text and "mix model=2,data=1" in text
    assert "all-reduce" in text or "all-gather" in text
    saved = json.loads(out.read_text())
    assert saved["collectives"]["pool model=2,data=1"]["median_s"] > 0
    assert saved["collectives"]["pool 1 device"]["collectives"] == {}
    assert saved["collectives"]["pool model=2,data=1"]["sent_bytes_per_device"] > 0
    assert set(results) >= {"device", "jax", "settings", "collectives"}


@pytest.mark.slow
def test_quick_run_end_to_end_in_a_fresh_process(tmp_path):
    """Every section, as a script; the script itself asks for the 4 host devices."""
    out = tmp_path / "scale.json"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    # No device count here (the script adds it); optimisation level 0 halves compile times.
    env["XLA_FLAGS"] = "--xla_backend_optimization_level=0"
    argv = ["--quick", *TINY, *ONE_ROUND, "--counts", "2", "--mesh-models", "2"]
    argv += ["--meshes", "model=2,data=2", "--json", str(out)]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    assert "4 device(s)" in text and "xla_force_host_platform_device_count=4" in text
    for row in ("=== 1. scale", "vs loop", "=== 2. mesh", "=== 3. collectives"):
        assert row in text
    lines = text.splitlines()
    # N, contender, ms/step, ms/model, vs N=2, min..max, vs loop: one row per contender
    rows = {
        line[5:27].strip(): line[27:].split()
        for line in lines
        if line[:3].strip() == "2" and len(line[27:].split()) == 5
    }
    assert set(rows) == {"cohort, one vmap", "cohort, chunks of 4", "unstacked loop"}
    assert all(row[2] == "1.000" for row in rows.values())
    assert rows["unstacked loop"][4] == "1.000"
    assert any(line.startswith("1 device") for line in lines)
    assert any(line.startswith("model=2,data=2") for line in lines)
    assert "host devices share" in text and "vmap over the members may be slower" in text
    saved = json.loads(out.read_text())
    assert set(saved["scale"]) == {"2"}
    two = saved["scale"]["2"]
    assert two["cohort"]["per_model_vs_n2"] == pytest.approx(1.0)
    assert two["cohort_over_loop"] > 0
    assert "XLA's static analysis" in text
    assert two["cohort/4"]["per_model_vs_n2"] == pytest.approx(1.0)
    for variant in ("cohort", "cohort/4", "loop"):
        analysis = two[variant]["analysis"]
        assert analysis["bytes_accessed"] > 0 and analysis["flops"] > 0
        assert analysis["working_set_bytes"] > 0
    assert saved["mesh"]["1 device"]["vs_1_device"] == pytest.approx(1.0)
    assert saved["mesh"]["model=2,data=2"]["median_s"] > 0
    assert "pool model=2,data=2" in saved["collectives"]
