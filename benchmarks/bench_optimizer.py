"""Update-only time and compiled memory: multi_model_optimizer vs optax.adamw.

Both optimizers run side by side in one process on the same three-model tree
(Hugging Face Flax BERT-, GPT-2- and RoBERTa-style parameter layouts, about
10M parameters in all). Timings interleave the two optimizers round by round
and report medians, because shared machines are noisy; memory comes from XLA's
compiled ``memory_analysis()``.

Usage: python benchmarks/bench_optimizer.py [--hidden 256] [--rounds 20]
       [--groupings type_shape,role,role_depth]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from transformers import BertConfig, FlaxBertModel, FlaxGPT2Model, FlaxRobertaModel, GPT2Config
from transformers import RobertaConfig

import mmojax


def model_tree(hidden: int, vocab: int, layers: tuple[int, int, int]):
    common = dict(hidden_size=hidden, num_attention_heads=4, intermediate_size=4 * hidden,
                  vocab_size=vocab, max_position_embeddings=130)
    models = {
        "bert": FlaxBertModel(BertConfig(num_hidden_layers=layers[0], **common), _do_init=False),
        "gpt2": FlaxGPT2Model(GPT2Config(n_embd=hidden, n_layer=layers[1], n_head=4,
                                         vocab_size=vocab, n_positions=128), _do_init=False),
        "roberta": FlaxRobertaModel(RobertaConfig(num_hidden_layers=layers[2], **common),
                                    _do_init=False),
    }
    shapes = {n: jax.eval_shape(lambda m=m: m.init_weights(jax.random.key(0), m.input_shape))
              for n, m in models.items()}
    leaves, treedef = jax.tree.flatten(shapes)
    keys = jax.random.split(jax.random.key(0), len(leaves))
    return jax.tree.unflatten(
        treedef, [0.02 * jax.random.normal(k, s.shape, s.dtype) for k, s in zip(keys, leaves)])


def compiled(tx, params, losses, apply):
    """Jits one update; with ``apply`` the step also applies it (``params -> params``)."""

    def update(grads, state, params):
        updates, state = tx.update(grads, state, params, losses=losses)
        return (optax.apply_updates(params, updates) if apply else updates), state

    state = tx.init(params)
    fn = jax.jit(update)
    exe = fn.lower(params, state, params).compile()
    return fn, state, exe.memory_analysis()


def peak_bytes(mem) -> int:
    return (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
            - mem.alias_size_in_bytes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=5000)
    parser.add_argument("--layers", default="2,2,3")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10, help="updates per timed round")
    parser.add_argument("--groupings", default="type_shape,role,role_depth",
                        help="comma-separated groupings of the full optimizer to time")
    args = parser.parse_args()
    layers = tuple(int(x) for x in args.layers.split(","))
    params = model_tree(args.hidden, args.vocab, layers)
    grads = jax.tree.map(lambda p: 1e-3 * jnp.ones_like(p), params)
    losses = {m: jnp.float32(1.0) for m in params}
    n_params = sum(x.size for x in jax.tree.leaves(params))

    contenders = {"optax.adamw": optax.adamw(3e-5, weight_decay=0.01)}
    for grouping in args.groupings.split(","):
        contenders[f"mmo {grouping}"] = mmojax.multi_model_optimizer(warmup_steps=100,
                                                                     grouping=grouping)
    contenders["mmo all off"] = mmojax.multi_model_optimizer(alpha=0.0, beta=0.0,
                                                              adaptive=False)
    plan = mmojax.sharing_plan(params)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
          f"jax {jax.__version__}, optax {optax.__version__}")
    print(f"tree: {n_params / 1e6:.2f}M parameters, hidden {args.hidden}, layers {layers}, "
          f"{len(plan.shared_groups)} shared keys")
    for apply in (False, True):
        built = {name: compiled(tx, params, losses, apply) for name, tx in contenders.items()}
        times = {name: [] for name in contenders}
        for _ in range(args.rounds):  # interleaved, so drift hits every contender alike
            for name, (fn, state, mem) in built.items():
                p = params
                jax.block_until_ready(fn(grads, state, p))
                start = time.perf_counter()
                for _ in range(args.steps):
                    out, state = fn(grads, state, p)
                    if apply:
                        p = out
                jax.block_until_ready(out)
                times[name].append((time.perf_counter() - start) / args.steps)
                built[name] = (fn, state, mem)
        title = "update + apply_updates" if apply else "update only"
        print(f"\n{title} ({args.rounds} interleaved rounds of {args.steps} updates, medians)")
        print(f"{'optimizer':<20}{'ms / update':>14}{'peak MiB':>12}{'temp MiB':>12}")
        for name in contenders:
            mem = built[name][2]
            print(f"{name:<20}{1e3 * statistics.median(times[name]):>14.3f}"
                  f"{peak_bytes(mem) / 2**20:>12.1f}{mem.temp_size_in_bytes / 2**20:>12.1f}")
        base_t = statistics.median(times["optax.adamw"])
        base_m = peak_bytes(built["optax.adamw"][2])
        for name in contenders:
            if name != "optax.adamw":
                t_ratio = statistics.median(times[name]) / base_t
                m_ratio = peak_bytes(built[name][2]) / base_m
                print(f"ratio {name} / optax.adamw: time {t_ratio:.3f} (target <= 1.5), "
                      f"peak memory {m_ratio:.3f} (target <= 1.2)")

if __name__ == "__main__":
    main()
