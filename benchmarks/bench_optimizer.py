"""Optimizer time and compiled memory: multi_model_optimizer vs optax.adamw, as users run it.

The headline is a jitted step that **donates** params and optimizer state and
runs ``update`` + ``optax.apply_updates``, the way every JAX training loop
(and ``mmojax.train``) runs an optimizer; update-only (no donation, no apply)
is a secondary table. All contenders run side by side in one process on the
same three-model tree (Hugging Face Flax BERT-, GPT-2- and RoBERTa-style
parameter layouts), at two tree sizes by default. Timings interleave the
contenders round by round and report medians, because shared machines are
noisy; memory comes from XLA's compiled ``memory_analysis()``.

Contenders: ``optax.adamw``; the default ``multi_model_optimizer`` (paper
weights 1.0/0.8/1.2, adaptive, sync every 10, warmup 100 of 1000 updates)
under each grouping; the same with ``beta=0`` (sharing without sync) and with
every mechanism off. Each round runs ``--steps`` updates (a multiple of the
sync period, so every round holds the same number of sync steps).

The tree is held as mmojax's models hold it: GPT-2's Conv1D kernels ``(in, out)``,
like every other kernel (``mmojax.models.swap_conv1d_layout`` of Hugging Face's
``(out, in)``), so no pool reads a transposed view. One more row times the default
``multi_model_optimizer`` on the tree in Hugging Face's own layout (what a user
who brings Flax GPT-2 parameters as ``transformers`` stores them gets: the same
mathematics, the alignment reads GPT-2's kernels transposed, and on a CPU an
XLA transpose costs several times a copy).

Usage: python benchmarks/bench_optimizer.py [--sizes 256:2,2,3:5000,256:4,4,4:8000]
       [--rounds 15] [--steps 10] [--groupings type_shape,role,role_depth]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from transformers import (
    BertConfig,
    FlaxBertModel,
    FlaxGPT2Model,
    FlaxRobertaModel,
    GPT2Config,
    RobertaConfig,
)

import mmojax
import mmojax.models

PAPER_WEIGHTS = {"bert": 1.0, "gpt2": 0.8, "roberta": 1.2}


def model_tree(hidden: int, vocab: int, layers: tuple[int, int, int]):
    common = dict(
        hidden_size=hidden,
        num_attention_heads=4,
        intermediate_size=4 * hidden,
        vocab_size=vocab,
        max_position_embeddings=130,
    )
    models = {
        "bert": FlaxBertModel(BertConfig(num_hidden_layers=layers[0], **common), _do_init=False),
        "gpt2": FlaxGPT2Model(
            GPT2Config(
                n_embd=hidden, n_layer=layers[1], n_head=4, vocab_size=vocab, n_positions=128
            ),
            _do_init=False,
        ),
        "roberta": FlaxRobertaModel(
            RobertaConfig(num_hidden_layers=layers[2], **common), _do_init=False
        ),
    }
    shapes = {
        n: jax.eval_shape(lambda m=m: m.init_weights(jax.random.key(0), m.input_shape))
        for n, m in models.items()
    }
    leaves, treedef = jax.tree.flatten(shapes)
    keys = jax.random.split(jax.random.key(0), len(leaves))
    return jax.tree.unflatten(
        treedef, [0.02 * jax.random.normal(k, s.shape, s.dtype) for k, s in zip(keys, leaves)]
    )


HF = "hf"  # the tree in Hugging Face's layout: GPT-2's Conv1D kernels (out, in)


def contenders(groupings):
    """``{label: (transformation, tree)}``: ``tree`` is ``None`` (as mmojax holds it) or
    :data:`HF`."""
    base = dict(warmup_steps=100, total_steps=1000, model_weights=PAPER_WEIGHTS)
    out = {"optax.adamw": (optax.adamw(3e-5, weight_decay=0.01), None)}
    for grouping in groupings:
        out[f"mmo {grouping}"] = (mmojax.multi_model_optimizer(grouping=grouping, **base), None)
    out["mmo role_depth beta=0"] = (mmojax.multi_model_optimizer(beta=0.0, **base), None)
    out["mmo all off"] = (
        mmojax.multi_model_optimizer(
            alpha=0.0, beta=0.0, adaptive=False, warmup_steps=100, total_steps=1000
        ),
        None,
    )
    out["mmo role_depth, HF layout"] = (mmojax.multi_model_optimizer(**base), HF)
    return out


def held(tree):
    """``tree`` (Hugging Face's layout) as mmojax holds it: GPT-2's Conv1D kernels (in, out)."""
    return {**tree, "gpt2": mmojax.models.swap_conv1d_layout(tree["gpt2"])}


def compiled(tx, params, losses, donated: bool):
    """One compiled step: donated update + apply (``params -> params``), or update only."""

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params, losses=losses)
        return (optax.apply_updates(params, updates) if donated else updates), state

    fn = jax.jit(step, donate_argnums=(0, 1) if donated else ())
    params = jax.tree.map(jnp.copy, params)  # the donated step consumes its own copy
    state = tx.init(params)
    exe = fn.lower(params, state, params).compile()
    return exe, params, state


def peak_bytes(mem) -> int:
    return (
        mem.argument_size_in_bytes
        + mem.output_size_in_bytes
        + mem.temp_size_in_bytes
        - mem.alias_size_in_bytes
    )


def measure(txs, trees, losses, donated: bool, rounds: int, steps: int):
    """``trees``: ``{tree: (params, grads)}`` for the trees the contenders name."""
    built = {}
    for name, (tx, tree) in txs.items():
        params, grads = trees[tree]
        built[name] = [*compiled(tx, params, losses, donated), grads]
    times = {name: [] for name in txs}
    for entry in built.values():  # warm up once, untimed
        exe, p, s, grads = entry
        out, s = exe(p, s, grads)
        entry[1:3] = [out if donated else p, s]
    for _ in range(rounds):  # interleaved, so drift hits every contender alike
        for name, entry in built.items():
            exe, p, s, grads = entry
            jax.block_until_ready((p, s))
            start = time.perf_counter()
            for _ in range(steps):
                out, s = exe(p, s, grads)
                if donated:
                    p = out
            jax.block_until_ready((out, s))
            times[name].append((time.perf_counter() - start) / steps)
            entry[1:3] = [p, s]
    mems = {name: entry[0].memory_analysis() for name, entry in built.items()}
    return {name: statistics.median(t) for name, t in times.items()}, mems


def report(title, med, mems, targets: bool):
    print(f"\n{title}")
    print(
        f"{'optimizer':<28}{'ms / update':>12}{'ratio':>8}{'peak MiB':>10}{'ratio':>8}"
        f"{'temp MiB':>10}"
    )
    base_t, base_m = med["optax.adamw"], peak_bytes(mems["optax.adamw"])
    for name in med:
        t_ratio, m_ratio = med[name] / base_t, peak_bytes(mems[name]) / base_m
        verdict = ""
        if targets and name in ("mmo type_shape", "mmo role_depth"):
            ok = t_ratio <= 1.5 and m_ratio <= 1.2
            verdict = "  target <= 1.5 time, <= 1.2 memory: " + ("PASS" if ok else "MISS")
        print(
            f"{name:<28}{1e3 * med[name]:>12.3f}{t_ratio:>8.3f}"
            f"{peak_bytes(mems[name]) / 2**20:>10.1f}{m_ratio:>8.3f}"
            f"{mems[name].temp_size_in_bytes / 2**20:>10.1f}{verdict}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="256:2,2,3:5000,256:4,4,4:8000",
        help="hidden:bert,gpt2,roberta layers:vocab, comma-separated",
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10, help="updates per timed round")
    parser.add_argument(
        "--groupings",
        default="type_shape,role,role_depth",
        help="comma-separated groupings of the full optimizer to time",
    )
    parser.add_argument(
        "--no-update-only", action="store_true", help="skip the secondary update-only table"
    )
    args = parser.parse_args()
    if args.steps < 1 or args.steps % 10:
        parser.error("--steps must be a positive multiple of the sync period (10)")
    sizes = []
    for spec in _split_sizes(args.sizes):
        hidden, layers, vocab = spec.split(":")
        sizes.append((int(hidden), tuple(int(x) for x in layers.split(",")), int(vocab)))
    device = jax.devices()[0]
    print(
        f"device: {device.device_kind} ({jax.default_backend()}), jax {jax.__version__}, "
        f"optax {optax.__version__}, mmojax {mmojax.__version__}"
    )
    txs = contenders(args.groupings.split(","))
    for hidden, layers, vocab in sizes:
        hf_params = model_tree(hidden, vocab, layers)
        hf_grads = jax.tree.map(lambda p: 1e-3 * jnp.ones_like(p), hf_params)
        params, grads = held(hf_params), held(hf_grads)
        losses = {m: jnp.float32(1.0) for m in params}
        trees = {None: (params, grads), HF: (hf_params, hf_grads)}
        n_params = sum(x.size for x in jax.tree.leaves(params))
        print(
            f"\n=== tree: {n_params / 1e6:.2f}M parameters, hidden {hidden}, layers {layers}, "
            f"vocab {vocab} ==="
        )
        med, mems = measure(txs, trees, losses, True, args.rounds, args.steps)
        report(
            f"donated update + apply_updates (headline; {args.rounds} interleaved rounds of "
            f"{args.steps} updates, medians)",
            med,
            mems,
            targets=True,
        )
        if not args.no_update_only:
            med, mems = measure(txs, trees, losses, False, args.rounds, args.steps)
            report("update only, not donated (secondary)", med, mems, targets=False)


def _split_sizes(text: str) -> list[str]:
    """``"256:2,2,3:5000,256:4,4,4:8000"`` -> ``["256:2,2,3:5000", "256:4,4,4:8000"]``."""
    out, fields = [], text.split(":")
    # fields: hidden, "l,l,l", "vocab,hidden", "l,l,l", "vocab"
    hidden = fields[0]
    for i in range(1, len(fields) - 1, 2):
        layers, tail = fields[i], fields[i + 1]
        vocab, _, next_hidden = tail.partition(",")
        out.append(f"{hidden}:{layers}:{vocab}")
        hidden = next_hidden
    return out


if __name__ == "__main__":
    main()
