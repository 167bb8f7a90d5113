"""The example scripts run end to end and their models learn."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_example(name, *args, timeout=600):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("JAX_PLATFORMS", "cpu")
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _final_line(stdout):
    lines = [line for line in stdout.splitlines() if line.startswith("final: ")]
    assert lines, f"no 'final: ' line in the output:\n{stdout[-2000:]}"
    return json.loads(lines[-1][len("final: ") :])


def test_custom_loop_runs_and_losses_go_down():
    result = _run_example("custom_loop.py", "--steps", "60")
    assert result.returncode == 0, result.stderr[-4000:]
    out = result.stdout
    assert "shared keys" in out  # the sharing plan was printed
    assert "lr=" in out  # per-model learning rates were logged
    final = _final_line(out)
    assert set(final) == {"multi_model_optimizer", "custom_chain"}
    for run, losses in final.items():
        assert set(losses["initial"]) == set(losses["final"]) and len(losses["initial"]) >= 2
        for model, start in losses["initial"].items():
            end = losses["final"][model]
            assert end < 0.8 * start, f"{run}/{model}: loss {start:.3f} -> {end:.3f}"
