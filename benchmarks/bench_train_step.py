"""Whole train-step time: mmo vs independent in one jit vs three separate jits.

Three contenders train the same three models (BERT, GPT-2 and RoBERTa from the
"small" preset, sequence classification) on the same random batch, side by
side in one process:

1. ``mmo``: one ``make_train_step`` over all three models, mode "mmo";
2. ``independent``: the same one-jit step, mode "independent" (plain AdamW);
3. ``3 x independent``: one jitted one-model step per model, mode
   "independent", called in sequence (that sequence is one step).

Every step donates its state, as the library's training loop does, so each
contender keeps the state its step returns. Programs are compiled ahead of
time (the trace and compile times are reported), then timed in interleaved
rounds of ``--steps`` steps each, and medians are reported, because shared
machines are noisy. ``--steps`` must be a multiple of the sync period (10
updates) so that every round of ``mmo`` holds the same number of sync steps.

``--ablations`` adds the mmo ablation modes ("no-sharing", "no-sync",
"no-adaptive-lr", "joint-no-sharing") as further one-jit contenders, to see
which stage of the optimizer the extra time of ``mmo`` comes from.

Usage: python benchmarks/bench_train_step.py [--rounds 5] [--steps 10]
    [--batch 32] [--seq 64] [--ablations]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

import jax
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


def build_contender(built, names, mode: str, batch, seed: int) -> Contender:
    """Jits, lowers and compiles one donated train step per group of ``names``."""
    loss = _tasks.loss_fn("classification")
    groups = [names] if not isinstance(names, list) else names
    parts, texts, lower_s, compile_s = [], [], 0.0, 0.0
    for group in groups:
        config = TrainConfig(mode=mode, models=group, gradient_accumulation_steps=1,
                             batch_size=int(batch["labels"].shape[0]), seed=seed)
        tx = config.optimizer(TOTAL_UPDATES)
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
        entry = text[text.find("ENTRY"):]
        fusions += len(re.findall(r"= \S+ fusion\(", text))
        conds += len(re.findall(r" conditional\(", text))
        whiles += len(re.findall(r" while\(", text))
        instructions += entry.count("\n")
    return f"{fusions} fusions, {conds} conditionals, {whiles} whiles, {instructions} entry ops"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds")
    parser.add_argument("--steps", type=int, default=10,
                        help="steps per contender per round (a multiple of 10)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    parser.add_argument("--ablations", action="store_true",
                        help="also time the mmo ablation modes in one jit")
    parser.add_argument("--hlo", action="store_true", help="print compiled-HLO op counts")
    args = parser.parse_args()
    sync_every = TrainConfig().sync_every
    if args.steps < 1 or args.steps % sync_every:
        parser.error(f"--steps must be a positive multiple of the sync period ({sync_every})")

    built = mmodels.build_models(NAMES, "small", "classification", vocab_size=args.vocab,
                                 max_length=args.seq, num_labels=2, seed=0)
    batch = random_batch(args.batch, args.seq, args.vocab)
    counts = {m: mmodels.parameter_count(built[m].params) for m in NAMES}
    device = jax.devices()[0]
    print(f"device: {device.device_kind} ({jax.default_backend()}, {jax.device_count()} "
          f"device(s)), jax {jax.__version__}, optax {optax.__version__}")
    print("models: " + ", ".join(f"{m} {n / 1e6:.3f}M" for m, n in counts.items())
          + f"; total {sum(counts.values()) / 1e6:.3f}M parameters")
    print(f"preset small, batch {args.batch}, seq {args.seq}, vocab {args.vocab}, "
          f"gradient_accumulation_steps 1, sync every {sync_every} updates")

    plan = {"mmo": (NAMES, "mmo"), "independent": (NAMES, "independent"),
            "3 x independent": ([(m,) for m in NAMES], "independent")}
    if args.ablations:
        plan.update({mode: (NAMES, mode) for mode in ABLATIONS})
    contenders = {}
    for label, (names, mode) in plan.items():
        contenders[label] = build_contender(built, names, mode, batch, seed=0)
    print("\ncompile (ahead of time; 3 x independent: sum of its three programs)")
    print(f"{'contender':<18}{'trace+lower s':>15}{'compile s':>12}")
    for label, c in contenders.items():
        print(f"{label:<18}{c.lower_s:>15.2f}{c.compile_s:>12.2f}")
    if args.hlo:
        print()
        for label, c in contenders.items():
            print(f"hlo {label}: {hlo_summary(c.texts)}")

    for c in contenders.values():
        c.run(batch, args.warmup)
    times = {label: [] for label in contenders}
    for _ in range(args.rounds):  # interleaved, so drift hits every contender alike
        for label, c in contenders.items():
            times[label].append(c.run(batch, args.steps))

    med = {label: statistics.median(t) for label, t in times.items()}
    print(f"\ntrain step ({args.rounds} interleaved rounds of {args.steps} steps, medians)")
    print(f"{'contender':<18}{'ms / step':>12}{'min':>10}{'max':>10}")
    for label, t in times.items():
        print(f"{label:<18}{1e3 * med[label]:>12.2f}{1e3 * min(t):>10.2f}{1e3 * max(t):>10.2f}")
    base = med["independent"]
    ratio = med["mmo"] / base
    print(f"\nratio mmo / independent (one jit): {ratio:.3f} (target <= 1.10) "
          f"{'PASS' if ratio <= 1.10 else 'MISS'}")
    ratio = med["3 x independent"] / base
    print(f"ratio 3 x independent / independent (one jit): {ratio:.3f} (target >= 1.00) "
          f"{'PASS' if ratio >= 1.0 else 'MISS'}")
    for mode in ABLATIONS if args.ablations else ():
        print(f"ratio {mode} / independent (one jit): {med[mode] / base:.3f}")


if __name__ == "__main__":
    main()
