"""Whole train-step time: mmo vs independent in one jit vs three separate jits.

Three contenders train the same three models (BERT, GPT-2 and RoBERTa from the
"small" preset, sequence classification) on the same random batch, side by
side in one process:

1. ``mmo``: one ``make_train_step`` over all three models, mode "mmo";
2. ``independent``: the same one-jit step, mode "independent" (plain AdamW);
3. ``3 x independent``: one jitted one-model step per model, mode
   "independent", called in sequence (that sequence is one step).

Every step donates its state, as the library's training loop does. Programs
are compiled ahead of time, then timed in interleaved rounds and medians are
reported, because shared machines are noisy. One run prints two settings: the
default (batch 32, seq 64, vocab 8000: forward and backward dominate) and an
update-heavy one (batch 4, seq 16, vocab 30000: a fine-tuning-like step where
the optimizer is a large share).

``--gradient-accumulation-steps K`` (the paper: 2) times whole optimizer
updates (K micro-batches each) and adds, per setting, the time of one
accumulate-only micro-batch of ``mmo`` beside a forward+backward-only step
(the same three models, gradients computed and reduced to their norm, no
optimizer): the accumulate-only call should cost about that.

``--ablations`` adds the mmo ablation modes ("no-sharing", "no-sync",
"no-adaptive-lr", "joint-no-sharing") as further one-jit contenders.

Usage: python benchmarks/bench_train_step.py [--rounds 5] [--updates 10]
    [--gradient-accumulation-steps 1] [--ablations] [--settings default,update-heavy]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmojax import models as mmodels
from mmojax.train import _step, _tasks
from mmojax.train._config import TrainConfig

NAMES = ("bert", "gpt2", "roberta")
ABLATIONS = ("no-sharing", "no-sync", "no-adaptive-lr", "joint-no-sharing")
TOTAL_UPDATES = 10_000  # schedule horizon; only the learning-rate values depend on it


def random_batch(batch: int, seq: int, vocab: int, seed: int = 0) -> dict[str, jax.Array]:
    """Random token ids (never the pad id 0), a full attention mask, labels 0/1."""
    rng = np.random.default_rng(seed)
    host = {
        "input_ids": rng.integers(1, vocab, size=(batch, seq), dtype=np.int32),
        "attention_mask": np.ones((batch, seq), np.int32),
        "labels": rng.integers(0, 2, size=(batch,), dtype=np.int32),
    }
    return jax.device_put(host)


class Contender:
    """A list of ``(compiled step, state)`` pairs, run in sequence as one step."""

    def __init__(self, parts, lower_s: float, compile_s: float, compiled_texts):
        self.parts = parts
        self.lower_s = lower_s
        self.compile_s = compile_s
        self.texts = compiled_texts

    def run(self, batch, steps: int) -> float:
        """Runs ``steps`` steps and returns the seconds per step (blocking at the end)."""
        start = time.perf_counter()
        for _ in range(steps):
            for i, (fn, state) in enumerate(self.parts):
                state, _ = fn(state, batch)  # the old state was donated
                self.parts[i] = (fn, state)
        jax.block_until_ready([state for _, state in self.parts])
        return (time.perf_counter() - start) / steps

    def run_calls(self, batch, calls: int) -> list[float]:
        """Seconds of each of ``calls`` single-part calls, blocking after each."""
        ((fn, state),) = self.parts
        out = []
        for _ in range(calls):
            start = time.perf_counter()
            state, _ = fn(state, batch)
            jax.block_until_ready(state)
            out.append(time.perf_counter() - start)
        self.parts[0] = (fn, state)
        return out


def grads_only() -> optax.GradientTransformation:
    """Zero updates; the state keeps the gradients' global norm (so backward is not removed)."""
    return optax.with_extra_args_support(
        optax.GradientTransformation(
            lambda params: jnp.zeros([], jnp.float32),
            lambda updates, state, params=None: (
                jax.tree.map(jnp.zeros_like, updates),
                optax.tree.norm(updates),
            ),
        )
    )


def build_contender(built, names, mode: str, batch, seed: int, accumulate: int) -> Contender:
    """Jits, lowers and compiles one donated train step per group of ``names``."""
    loss = _tasks.loss_fn("classification")
    groups = [names] if not isinstance(names, list) else names
    parts, texts, lower_s, compile_s = [], [], 0.0, 0.0
    for group in groups:
        config = TrainConfig(
            mode="independent" if mode == "grads-only" else mode,
            models=group,
            gradient_accumulation_steps=accumulate,
            batch_size=int(batch["labels"].shape[0]),
            seed=seed,
        )
        tx = grads_only() if mode == "grads-only" else config.optimizer(TOTAL_UPDATES)
        fns = {m: _step.ModelFns(built[m].apply_fn, loss) for m in group}
        step = _step.make_train_step(fns, tx)
        state = _step.init_train_state({m: built[m].params for m in group}, tx, seed)
        start = time.perf_counter()
        lowered = step.lower(state, batch)
        lower_s += time.perf_counter() - start
        start = time.perf_counter()
        compiled = lowered.compile()
        compile_s += time.perf_counter() - start
        parts.append((compiled, state))
        texts.append(compiled.as_text())
    return Contender(parts, lower_s, compile_s, texts)


def hlo_summary(texts) -> str:
    """Counts of fusions, while/conditional ops and instructions in compiled HLO."""
    fusions = conds = whiles = instructions = 0
    for text in texts:
        entry = text[text.find("ENTRY") :]
        fusions += len(re.findall(r"= \S+ fusion\(", text))
        conds += len(re.findall(r" conditional\(", text))
        whiles += len(re.findall(r" while\(", text))
        instructions += entry.count("\n")
    return f"{fusions} fusions, {conds} conditionals, {whiles} whiles, {instructions} entry ops"


SETTINGS = {"default": (32, 64, 8000), "update-heavy": (4, 16, 30000)}
TARGETS = {"default": 1.10, "update-heavy": 1.25}


def run_setting(name: str, args) -> None:
    batch_size, seq, vocab = SETTINGS[name]
    k = args.gradient_accumulation_steps
    sync_every = TrainConfig().sync_every
    built = mmodels.build_models(
        NAMES, "small", "classification", vocab_size=vocab, max_length=seq, num_labels=2, seed=0
    )
    batch = random_batch(batch_size, seq, vocab)
    counts = {m: mmodels.parameter_count(built[m].params) for m in NAMES}
    print(
        f"\n=== setting {name}: batch {batch_size}, seq {seq}, vocab {vocab}, "
        f"gradient_accumulation_steps {k}, sync every {sync_every} updates ==="
    )
    print(
        "models: "
        + ", ".join(f"{m} {n / 1e6:.3f}M" for m, n in counts.items())
        + f"; total {sum(counts.values()) / 1e6:.3f}M parameters"
    )
    plan = {
        "mmo": (NAMES, "mmo"),
        "independent": (NAMES, "independent"),
        "3 x independent": ([(m,) for m in NAMES], "independent"),
    }
    if args.ablations:
        plan.update({mode: (NAMES, mode) for mode in ABLATIONS})
    contenders = {
        label: build_contender(built, names, mode, batch, 0, k)
        for label, (names, mode) in plan.items()
    }
    print(f"{'contender':<18}{'trace+lower s':>15}{'compile s':>12}")
    for label, c in contenders.items():
        print(f"{label:<18}{c.lower_s:>15.2f}{c.compile_s:>12.2f}")
    if args.hlo:
        for label, c in contenders.items():
            print(f"hlo {label}: {hlo_summary(c.texts)}")

    calls = args.updates * k  # micro-batches per round: whole updates, whole sync periods
    for c in contenders.values():
        c.run(batch, args.warmup * k)
    times = {label: [] for label in contenders}
    for _ in range(args.rounds):  # interleaved, so drift hits every contender alike
        for label, c in contenders.items():
            times[label].append(c.run(batch, calls) * k)
    med = {label: statistics.median(t) for label, t in times.items()}
    print(
        f"\noptimizer update = {k} micro-batch(es); {args.rounds} interleaved rounds of "
        f"{args.updates} updates, medians"
    )
    print(f"{'contender':<18}{'ms / update':>12}{'min':>10}{'max':>10}")
    for label, t in times.items():
        print(f"{label:<18}{1e3 * med[label]:>12.2f}{1e3 * min(t):>10.2f}{1e3 * max(t):>10.2f}")
    base = med["independent"]
    ratio = med["mmo"] / base
    print(
        f"ratio mmo / independent (one jit): {ratio:.3f} (target <= {TARGETS[name]:.2f}) "
        f"{'PASS' if ratio <= TARGETS[name] else 'MISS'}"
    )
    print(f"ratio 3 x independent / independent (one jit): {med['3 x independent'] / base:.3f}")
    for mode in ABLATIONS if args.ablations else ():
        print(f"ratio {mode} / independent (one jit): {med[mode] / base:.3f}")
    if k > 1:
        # Per-call times: which calls of mmo only accumulate follows from its mini_step.
        mmo = contenders["mmo"]
        only = build_contender(built, NAMES, "grads-only", batch, 0, 1)
        only.run(batch, args.warmup)
        first = int(mmo.parts[0][1].opt_state.mini_step)
        acc, fwd = [], []
        for _ in range(args.rounds):
            per_call = mmo.run_calls(batch, calls)
            acc += [t for i, t in enumerate(per_call) if (first + i) % k != k - 1]
            fwd += only.run_calls(batch, calls)
        a, f = statistics.median(acc), statistics.median(fwd)
        print(
            f"accumulate-only micro-batch (mmo): {1e3 * a:.2f} ms; forward+backward only: "
            f"{1e3 * f:.2f} ms; ratio {a / f:.3f} (target <= 1.10) "
            f"{'PASS' if a / f <= 1.10 else 'MISS'}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds")
    parser.add_argument(
        "--updates",
        type=int,
        default=10,
        help="optimizer updates per contender per round (a multiple of 10)",
    )
    parser.add_argument("--gradient-accumulation-steps", type=int, default=1)
    parser.add_argument(
        "--settings", default="default,update-heavy", help=f"comma-separated of {sorted(SETTINGS)}"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed updates after compiling")
    parser.add_argument(
        "--ablations", action="store_true", help="also time the mmo ablation modes in one jit"
    )
    parser.add_argument("--hlo", action="store_true", help="print compiled-HLO op counts")
    args = parser.parse_args()
    sync_every = TrainConfig().sync_every
    if args.updates < 1 or args.updates % sync_every:
        parser.error(f"--updates must be a positive multiple of the sync period ({sync_every})")
    if args.gradient_accumulation_steps < 1:
        parser.error("--gradient-accumulation-steps must be >= 1")
    settings = [s for s in args.settings.split(",") if s]
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        parser.error(f"unknown settings {unknown}; choose from {sorted(SETTINGS)}")
    device = jax.devices()[0]
    print(
        f"device: {device.device_kind} ({jax.default_backend()}, {jax.device_count()} "
        f"device(s)), jax {jax.__version__}, optax {optax.__version__}"
    )
    for name in settings:
        run_setting(name, args)


if __name__ == "__main__":
    main()
