"""Scaling: train-step time for N models stacked vs unstacked, one device vs a mesh, collectives.

Three sections, side by side in one process (``--sections`` picks some):

1. ``scale``: the train-step time of N = 1, 2, 4, 8, 16 BERT-style
   classifiers of one architecture (Hugging Face Flax BERT, hidden 64, 2
   layers, seq 32, batch 8 by default), held (a) as one stacked cohort
   ``{"bert": mmojax.stack_models([...])}``, whose forward and backward is
   one ``jax.vmap``, and (b) unstacked, ``{"bert/0": ..., "bert/1": ...}``,
   a Python loop unrolled in the same one jit. Both use the default
   ``mmojax.multi_model_optimizer()`` (sync every 10 updates: every timed
   round is a multiple of 10 steps, so sync steps count in their natural
   proportion) and the jitted ``make_train_step``, which donates its state,
   called as users call it. Printed: ms per step, ms per model, the
   per-model time at N relative to N=2 (target: N=16 within 1.2x of N=2)
   and the cohort / loop ratio. Honestly: on a CPU the vmapped cohort may
   well be *slower* than the unrolled loop (the stacked layout is meant for
   accelerators and for the mesh below); the benchmark reports what it
   measures either way.
2. ``mesh``: one step of a cohort of ``--mesh-models`` members on a single
   device vs on meshes (``make_mesh("model=4,data=1")`` and
   ``make_mesh("model=2,data=2")``, state placed by ``shard_state``, batch
   by ``shard_batch``), with the collectives the compiled program holds
   (counts and bytes, read from its HLO; each collective counts once per
   program, those of the sync branch too, which runs 1 step in 10): the
   pooled gradients and sync sums are all-reduces of one member's shape;
   the small all-gathers are per-member scalars (losses, rates). On a CPU the script asks for 4
   host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=4``,
   set before JAX is imported unless ``XLA_FLAGS`` already names a count);
   those devices share the machine's cores, so a mesh cannot be faster
   there: the point is that it runs and what the communication costs.
3. ``collectives``: the communication of sharing and sync alone: over a
   cohort-stacked gradient tree (the same BERT shapes, ``--mesh-models``
   members) sharded on ``model``, a jitted weighted sum over the member axis
   per leaf (``jnp.tensordot(weights, stacked, axes=1)``, the pool that
   gradient sharing and parameter sync form), its result replicated; and the
   whole mixing pass (every member moved towards the pool, written back
   sharded), each vs the same on one device, with the bytes the collectives
   move.

Every contender is compiled before timing (its first call, compile plus one
step, is reported; then ``--warmup`` more untimed calls), then timed in
``--rounds`` interleaved rounds (so drift on a noisy machine hits every
contender alike), blocking on the results at the end of each round; medians
are reported. ``--json PATH`` writes every measured number.

Time: on a CPU the XLA compiles dominate (the unrolled loop's program grows
with N; the cohort's does not). On 2 busy CPU cores (jax 0.10.2) ``--quick``
took 6 minutes wall, 4 of CPU, mostly compiling. The full default run is
estimated at 12-15 minutes on an otherwise idle 2-core machine (20-25 on a
busy one), more than half of it compiling: the loop's N=16 program alone
took 3.7 CPU-minutes to trace and compile. ``--counts 1,2,4,8`` saves about 4
minutes, ``--cache-dir`` keeps compiled programs for reruns, and
``--sections`` runs a part.

Usage: python benchmarks/bench_scale.py [--quick] [--counts 1,2,4,8,16] [--rounds 5]
    [--steps 10] [--hidden 64 --layers 2 --seq 32 --batch 8 --vocab 1000]
    [--mesh-models 8] [--meshes "model=4,data=1;model=2,data=2"]
    [--sections scale,mesh,collectives] [--json out.json]
"""

from __future__ import annotations

import os
import re

HOST_DEVICES = 4
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    # Before JAX initialises: the mesh sections need several (host) devices.
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={HOST_DEVICES}"
    ).strip()

import argparse  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

import mmojax  # noqa: E402
from mmojax import models as mmodels  # noqa: E402
from mmojax.train import _mesh, _step, _tasks  # noqa: E402

SECTIONS = ("scale", "mesh", "collectives")
SYNC_EVERY = inspect.signature(mmojax.multi_model_optimizer).parameters["sync_every"].default
TARGET = 1.20  # per-model time at the largest N within this factor of N=2
FULL = dict(
    counts="1,2,4,8,16",
    hidden=64,
    layers=2,
    heads=2,
    seq=32,
    batch=8,
    vocab=1000,
    mesh_models=8,
    rounds=5,
    steps=10,
    warmup=1,
)
QUICK = dict(
    counts="1,2,4",
    hidden=32,
    layers=1,
    heads=2,
    seq=16,
    batch=4,
    vocab=128,
    mesh_models=4,
    rounds=2,
    steps=10,
    warmup=1,
)
COLLECTIVE_OPS = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
DTYPE_BYTES = {
    "pred": 1,
    "s8": 1,
    "u8": 1,
    "s16": 2,
    "u16": 2,
    "f16": 2,
    "bf16": 2,
    "s32": 4,
    "u32": 4,
    "f32": 4,
    "s64": 8,
    "u64": 8,
    "f64": 8,
}


# --------------------------------------------------------------------------- models


def bert_config(args) -> mmodels.ModelConfig:
    return mmodels.ModelConfig(
        arch="bert",
        hidden=args.hidden,
        layers=args.layers,
        heads=args.heads,
        intermediate=4 * args.hidden,
        vocab_size=args.vocab,
        max_length=args.seq,
    )


def build_members(config: mmodels.ModelConfig, n: int, seed: int = 0):
    """``(ModelFns, [n parameter trees])``: one architecture, ``n`` independent initialisations.

    ``n == 0``: no parameters and no model run, only the shapes of one
    member's parameters (``[jax.ShapeDtypeStruct tree]``), for section 3.
    """

    def build():
        return mmodels.build_model(config, "classification", 2, seed, name="bert")

    if n == 0:
        return None, [jax.eval_shape(lambda: build().params)]
    model = build()
    # Eager init: after the first model's, its small ops are compiled (a jitted init is not).
    params = [model.params] + [model.init(jax.random.PRNGKey(seed + i)) for i in range(1, n)]
    return _step.ModelFns(model.apply_fn, _tasks.loss_fn("classification")), params


def random_batch(batch: int, seq: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random token ids (never the pad id 0), a full attention mask, labels 0/1 (host arrays)."""
    rng = np.random.default_rng(seed)
    return {
        "input_ids": rng.integers(1, vocab, size=(batch, seq), dtype=np.int32),
        "attention_mask": np.ones((batch, seq), np.int32),
        "labels": rng.integers(0, 2, size=(batch,), dtype=np.int32),
    }


def parameter_count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def tree_bytes(tree) -> int:
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


# --------------------------------------------------------------------------- timing


class Contender:
    """One train step and its (donated, so replaced every call) state, called as users call it."""

    def __init__(self, step, state, batch):
        self.step, self.batch = step, batch
        start = time.perf_counter()
        self.state, _ = step(state, batch)  # compiles
        jax.block_until_ready(self.state)
        self.first_call_s = time.perf_counter() - start

    def run(self, steps: int) -> float:
        """Runs ``steps`` steps; seconds per step, blocking on the final state."""
        if steps < 1:
            return 0.0
        state = self.state
        start = time.perf_counter()
        for _ in range(steps):
            state, _ = self.step(state, self.batch)  # the old state was donated
        jax.block_until_ready(state)
        self.state = state
        return (time.perf_counter() - start) / steps

    def compiled(self):
        """The compiled program (a cache hit: the step has run with these shapes)."""
        jitted = self.step
        if hasattr(jitted, "compiled"):  # a mesh step: one jitted function per structure
            (jitted,) = jitted.compiled.values()
        return jitted.lower(self.state, self.batch).compile()

    def hlo(self) -> str:
        return self.compiled().as_text()

    def analysis(self) -> dict[str, float]:
        """XLA's static cost and memory analysis of the step: bytes accessed, flops, and the
        working set (the state, donated in place, plus the step's temporaries)."""
        exe = self.compiled()
        cost = exe.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        mem = exe.memory_analysis()
        return {
            "bytes_accessed": float(cost.get("bytes accessed", float("nan"))),
            "flops": float(cost.get("flops", float("nan"))),
            "working_set_bytes": float(tree_bytes(self.state) + mem.temp_size_in_bytes),
        }


class Call:
    """A pure jitted function of fixed arguments (no donation), for the collectives section."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        self.first_call_s = time.perf_counter() - start

    def run(self, steps: int) -> float:
        if steps < 1:
            return 0.0
        start = time.perf_counter()
        for _ in range(steps):
            out = self.fn(*self.args)
        jax.block_until_ready(out)
        return (time.perf_counter() - start) / steps

    def hlo(self) -> str:
        return self.fn.lower(*self.args).compile().as_text()


def timed(contenders: dict, args) -> dict[str, dict[str, float]]:
    """Warm-up, then interleaved rounds; per contender median/min/max seconds per call."""
    for c in contenders.values():
        c.run(args.warmup)
    times = {label: [] for label in contenders}
    for _ in range(args.rounds):  # interleaved, so drift hits every contender alike
        for label, c in contenders.items():
            times[label].append(c.run(args.steps))
    return {
        label: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t)}
        for label, t in times.items()
    }


# --------------------------------------------------------------------------- HLO collectives


def _shape_bytes(text: str) -> int:
    total = 0
    for dtype, dims in re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", text):
        if dtype in DTYPE_BYTES:
            total += DTYPE_BYTES[dtype] * int(np.prod([int(d) for d in dims.split(",") if d]))
    return total


def _group_size(line: str, devices: int) -> int:
    """Devices per replica group of a collective: mesh-axis, iota or explicit formats."""
    named = re.search(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}", line)
    if named:
        sizes = {a: int(s) for a, s in re.findall(r"'([^']+)'=(\d+)", named.group(1))}
        axes = re.findall(r"'([^']+)'", named.group(2))
        return int(np.prod([sizes[a] for a in axes if a in sizes])) if axes else devices
    iota = re.search(r"replica_groups=\[(\d+),(\d+)\]<=", line)
    if iota:
        return int(iota.group(2))
    explicit = re.search(r"replica_groups=\{\{([\d,]*)\}", line)
    if explicit and explicit.group(1):
        return len(explicit.group(1).split(","))
    return devices


def collective_stats(hlo: str, devices: int) -> dict[str, dict[str, int]]:
    """Per collective kind in a compiled (SPMD, per-device) program: count, result bytes, sent.

    ``sent_bytes`` estimates what one device sends per call with ring
    algorithms over a group of ``g`` devices: an all-reduce of ``B`` bytes
    ``2 (g-1)/g B``, an all-gather of a ``B``-byte result ``(g-1)/g B``, a
    reduce-scatter to ``B`` bytes ``(g-1) B``, an all-to-all ``(g-1)/g B``,
    a collective-permute ``B``. Each collective of the program counts once,
    also one inside a loop or a conditional (sync's branch runs 1 step in 10).
    """
    out: dict[str, dict[str, int]] = {}
    pattern = re.compile(
        r"=\s*(.+?)\s+(" + "|".join(COLLECTIVE_OPS) + r")(?:-start)?\(", re.IGNORECASE
    )
    for line in hlo.splitlines():
        match = pattern.search(line)
        if not match:
            continue
        kind, size = match.group(2), _shape_bytes(match.group(1))
        g = _group_size(line, devices)
        factor = {
            "all-reduce": 2 * (g - 1) / g,
            "all-gather": (g - 1) / g,
            "reduce-scatter": g - 1,
            "all-to-all": (g - 1) / g,
            "collective-permute": 1.0,
        }[kind]
        entry = out.setdefault(kind, {"count": 0, "result_bytes": 0, "sent_bytes": 0})
        entry["count"] += 1
        entry["result_bytes"] += size
        entry["sent_bytes"] += int(factor * size)
    return out


def describe(stats: dict[str, dict[str, int]]) -> str:
    if not stats:
        return "none"
    return ", ".join(
        f"{s['count']} {kind} ({s['result_bytes'] / 2**10:.1f} KiB, ~{s['sent_bytes'] / 2**10:.1f}"
        " KiB sent/device)"
        for kind, s in sorted(stats.items())
    )


def sent_total(stats) -> int:
    return sum(s["sent_bytes"] for s in stats.values())


# --------------------------------------------------------------------------- sections


class Steps:
    """One jitted train step per (model names, mesh), shared by every contender that fits it.

    Users build one step and call it on states of any size; the cohort step
    of section 1 thus serves every N (one compile per shape) and section 2's
    single-device cohort reuses it (no second compile of the same program).
    """

    def __init__(self, fns):
        self.fns, self.tx, self.cache = fns, mmojax.multi_model_optimizer(), {}

    def get(self, names, mesh=None, spec=None, chunk=None):
        key = (tuple(names), spec, chunk)
        if key not in self.cache:
            models = {name: self.fns for name in names}
            self.cache[key] = _step.make_train_step(models, self.tx, mesh=mesh, cohort_chunk=chunk)
        return self.cache[key]

    def state(self, params, seed):
        return _step.init_train_state(params, self.tx, seed)


def _variants(args) -> dict[str, int | None]:
    """Section 1's contenders and their ``cohort_chunk``: the cohort as one vmap, in chunks
    (when asked), the loop."""
    chunked = {f"cohort/{args.cohort_chunk}": args.cohort_chunk} if args.cohort_chunk else {}
    return {"cohort": None, **chunked, "loop": None}


def _variant_label(variant: str, chunk: int | None) -> str:
    if chunk is not None:
        return f"cohort, chunks of {chunk}"
    return {"cohort": "cohort, one vmap", "loop": "unstacked loop"}[variant]


def section_scale(args, steps: Steps, members, batch) -> dict:
    counts, variants = args.counts, _variants(args)
    labels = {v: _variant_label(v, chunk) for v, chunk in variants.items()}
    chunk_note = (
        f", the cohort run in chunks of {args.cohort_chunk} members (lax.map of a vmap, "
        "make_train_step(cohort_chunk=...))"
        if args.cohort_chunk
        else ""
    )
    print(
        f"\n=== 1. scale: N models of one architecture, stacked cohort (one vmap){chunk_note} "
        f"vs unstacked loop (one jit); {args.rounds} interleaved rounds of {args.steps} steps "
        f"(sync every {SYNC_EVERY} updates included), medians ==="
    )
    contenders = {}
    for n in counts:
        cohort = {"bert": mmojax.stack_models(members[:n])}
        loop = {f"bert/{i}": members[i] for i in range(n)}
        for variant in variants:
            params = loop if variant == "loop" else cohort
            contenders[(n, variant)] = Contender(
                steps.get(params, chunk=variants[variant]), steps.state(params, args.seed), batch
            )
    print("first call (compile + one step), s:")
    print(f"{'N':>3}" + "".join(f"{labels[v]:>22}" for v in variants))
    for n in counts:
        print(f"{n:>3}" + "".join(f"{contenders[(n, v)].first_call_s:>22.2f}" for v in variants))
    med = timed(contenders, args)
    per_model = {key: med[key]["median_s"] / key[0] for key in med}
    ref = 2 if 2 in counts else None
    print(
        f"\n{'N':>3}  {'contender':<22}{'ms/step':>10}{'ms/model':>10}{'vs N=2':>9}"
        f"{'min..max ms':>16}{'vs loop':>9}"
    )
    results = {}
    for n in counts:
        entry = {}
        for variant in variants:
            m = med[(n, variant)]
            rel = per_model[(n, variant)] / per_model[(ref, variant)] if ref else float("nan")
            vs_loop = m["median_s"] / med[(n, "loop")]["median_s"]
            spread = f"{1e3 * m['min_s']:.1f}..{1e3 * m['max_s']:.1f}"
            print(
                f"{n:>3}  {labels[variant]:<22}{1e3 * m['median_s']:>10.2f}"
                f"{1e3 * per_model[(n, variant)]:>10.2f}{rel:>9.3f}{spread:>16}{vs_loop:>9.3f}"
            )
            entry[variant] = {
                **m,
                "per_model_s": per_model[(n, variant)],
                "per_model_vs_n2": rel,
                "over_loop": vs_loop,
                "first_call_s": contenders[(n, variant)].first_call_s,
            }
        entry["cohort_over_loop"] = entry["cohort"]["over_loop"]
        results[str(n)] = entry
    print(
        "\nXLA's static analysis of the same compiled steps (no timing): per model, bytes "
        "accessed and flops; working set = train state + the step's temporaries"
    )
    if args.cohort_chunk:
        print(
            "(a cohort in chunks is a loop over them: XLA counts the loop body once, so its "
            "bytes and flops are those of one chunk, not of every member)"
        )
    print(f"{'N':>3}  {'contender':<22}{'MB/model':>10}{'Mflop/model':>13}{'working set MiB':>17}")
    for n in counts:
        for variant in variants:
            a = contenders[(n, variant)].analysis()
            results[str(n)][variant]["analysis"] = a
            print(
                f"{n:>3}  {labels[variant]:<22}{a['bytes_accessed'] / n / 1e6:>10.2f}"
                f"{a['flops'] / n / 1e6:>13.1f}{a['working_set_bytes'] / 2**20:>17.1f}"
            )
    top = max(counts)
    for variant in variants:
        if ref and top > ref:
            rel = per_model[(top, variant)] / per_model[(ref, variant)]
            verdict = "PASS" if rel <= TARGET else "MISS"
            print(
                f"{labels[variant]}: per-model time at N={top} / N={ref} = {rel:.3f} "
                f"(target <= {TARGET:.2f}) {verdict}"
            )
    if jax.default_backend() == "cpu":
        print(
            "note: on a CPU, vmap over the members may be slower than the unrolled loop; the "
            "stacked layout is meant for accelerators and for a model-axis mesh"
        )
    return results


def _meshes(args) -> list[tuple[str, jax.sharding.Mesh | None]]:
    out = []
    for spec in args.meshes:
        shape = _mesh.parse_mesh(spec)
        need = shape["model"] * shape["data"]
        if need > jax.device_count():
            print(
                f"skip mesh {spec}: needs {need} devices, there are {jax.device_count()} "
                f"(on a CPU: XLA_FLAGS=--xla_force_host_platform_device_count={need} before "
                "JAX starts)"
            )
            continue
        if args.mesh_models % shape["model"] or args.batch % shape["data"]:
            print(
                f"skip mesh {spec}: --mesh-models {args.mesh_models} / --batch {args.batch} "
                "not divisible by its axes"
            )
            continue
        out.append((spec, _mesh.make_mesh(shape)))
    return out


def _cpu_note() -> None:
    if jax.default_backend() == "cpu":
        print(
            f"note: {jax.device_count()} host devices share this machine's {os.cpu_count()} CPU "
            "core(s): a mesh cannot be faster here; it shows that the sharded step runs and "
            "what its collectives cost"
        )


def section_mesh(args, steps: Steps, members, batch, meshes) -> dict:
    k = args.mesh_models
    print(
        f"\n=== 2. mesh: one train step of a cohort of {k} members, one device vs meshes; "
        f"{args.rounds} interleaved rounds of {args.steps} steps, medians ==="
    )
    _cpu_note()
    params = {"bert": mmojax.stack_models(members[:k])}
    contenders = {
        "1 device": Contender(
            steps.get(params), steps.state(params, args.seed), jax.device_put(batch)
        )
    }
    for spec, mesh in meshes:
        state = _mesh.shard_state(steps.state(params, args.seed), mesh)
        contenders[spec] = Contender(
            steps.get(params, mesh, spec), state, _mesh.shard_batch(batch, mesh)
        )
    med = timed(contenders, args)
    base = med["1 device"]["median_s"]
    print(
        f"{'layout':<18}{'1st call s':>11}{'ms/step':>10}{'min..max ms':>15}{'vs 1 device':>13}"
        "  collectives in the compiled step (each once; sync's run 1 step in 10)"
    )
    results = {}
    for label, c in contenders.items():
        m = med[label]
        stats = collective_stats(c.hlo(), jax.device_count())
        spread = f"{1e3 * m['min_s']:.1f}..{1e3 * m['max_s']:.1f}"
        print(
            f"{label:<18}{c.first_call_s:>11.2f}{1e3 * m['median_s']:>10.2f}{spread:>15}"
            f"{m['median_s'] / base:>13.3f}  {describe(stats)}"
        )
        results[label] = {
            **m,
            "first_call_s": c.first_call_s,
            "vs_1_device": m["median_s"] / base,
            "collectives": stats,
        }
    print(
        "(1st call: compile + one step; the single-device program is section 1's cohort step "
        "when --mesh-models is one of --counts, compiled once)"
    )
    state_bytes = tree_bytes(contenders["1 device"].state)
    print(
        f"train state {state_bytes / 2**20:.2f} MiB ({k} members, params + optimizer state); "
        f"one member's parameters {tree_bytes(members[0]) / 2**10:.1f} KiB"
    )
    return results


def section_collectives(args, member, meshes) -> dict:
    """``member``: one member's parameters, or their shapes (only the shapes are used)."""
    k = args.mesh_models
    grads = jax.tree.map(lambda x: jnp.full((k, *x.shape), 1e-3, x.dtype), member)
    weights = jnp.full((k,), 1.0 / k, jnp.float32)  # equal weights, normalised ("mean")
    coef = 0.2  # the default sharing alpha (sync's beta is 0.1: same operation, same bytes)
    member_bytes = tree_bytes(member)
    print(
        f"\n=== 3. collectives: the pool of sharing/sync over a cohort of {k} members "
        f"(gradient tree {tree_bytes(grads) / 2**20:.2f} MiB, one member "
        f"{member_bytes / 2**10:.1f} KiB, {len(jax.tree.leaves(grads))} leaves); "
        f"{args.rounds} interleaved rounds of {args.steps} calls, medians ==="
    )
    _cpu_note()

    def pool(tree, w):
        return jax.tree.map(
            lambda x: jnp.tensordot(w, x, axes=1, precision=jax.lax.Precision.HIGHEST), tree
        )

    share = mmojax.share_gradients(alpha=coef)  # the library's own sharing pass

    def mix(tree, w):
        del w  # equal member weights: share_gradients' default
        cohort = {"bert": mmojax.Cohort(tree)}
        return share.update(cohort, share.init(cohort))[0]["bert"].params

    contenders, placements = {}, [("1 device", None)] + meshes
    for spec, mesh in placements:
        if mesh is None:
            tree, w = jax.device_put(grads), jax.device_put(weights)
            pool_fn, mix_fn = jax.jit(pool), jax.jit(mix)
        else:
            on_model = NamedSharding(mesh, PartitionSpec(_mesh.MODEL_AXIS))
            replicated = _mesh.replicated(mesh)
            tree = jax.device_put(grads, on_model)
            w = jax.device_put(weights, replicated)
            pool_fn = jax.jit(pool, in_shardings=(on_model, replicated), out_shardings=replicated)
            mix_fn = jax.jit(mix, in_shardings=(on_model, replicated), out_shardings=on_model)
        contenders[("pool", spec)] = Call(pool_fn, tree, w)
        contenders[("mix", spec)] = Call(mix_fn, tree, w)
    med = timed(contenders, args)
    print(
        "pool: sum_i w_i g_i per leaf, result replicated; mix: mmojax.share_gradients on the "
        "cohort, every member moved towards the pool on its own devices (one sharing pass; a "
        "sync pass is the same operation)"
    )
    print(
        f"{'what':<22}{'ms/call':>10}{'min..max ms':>15}{'vs 1 device':>13}"
        f"{'sent KiB/device':>17}  collectives"
    )
    results = {}
    for (what, spec), c in contenders.items():
        m = med[(what, spec)]
        base = med[(what, "1 device")]["median_s"]
        stats = collective_stats(c.hlo(), jax.device_count())
        spread = f"{1e3 * m['min_s']:.2f}..{1e3 * m['max_s']:.2f}"
        print(
            f"{what + ' ' + spec:<22}{1e3 * m['median_s']:>10.3f}{spread:>15}"
            f"{m['median_s'] / base:>13.3f}"
            f"{sent_total(stats) / 2**10:>17.1f}  {describe(stats)}"
        )
        results[f"{what} {spec}"] = {
            **m,
            "vs_1_device": m["median_s"] / base,
            "collectives": stats,
            "sent_bytes_per_device": sent_total(stats),
        }
    results["member_bytes"] = member_bytes
    results["tree_bytes"] = tree_bytes(grads)
    return results


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and 2 rounds (a smoke run); explicit flags still win",
    )
    parser.add_argument(
        "--counts", help=f"comma-separated model counts N (default {FULL['counts']})"
    )
    for name in ("hidden", "layers", "heads", "seq", "batch", "vocab"):
        parser.add_argument(
            f"--{name}", type=int, help=f"default {FULL[name]} ({QUICK[name]} with --quick)"
        )
    parser.add_argument(
        "--mesh-models",
        type=int,
        help=f"cohort size of the mesh and collectives sections (default {FULL['mesh_models']})",
    )
    parser.add_argument(
        "--meshes",
        default="model=4,data=1;model=2,data=2",
        help="';'-separated mesh shapes for sections 2 and 3 (default %(default)s)",
    )
    parser.add_argument("--rounds", type=int, help=f"interleaved rounds (default {FULL['rounds']})")
    parser.add_argument(
        "--steps",
        type=int,
        help=f"steps per contender per round, a multiple of the sync period 10 "
        f"(default {FULL['steps']})",
    )
    parser.add_argument(
        "--warmup", type=int, help=f"untimed steps after compiling (default {FULL['warmup']})"
    )
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated of {SECTIONS}"
    )
    parser.add_argument(
        "--cohort-chunk",
        type=int,
        default=4,
        help="section 1 also times the cohort run in chunks of this many members "
        "(make_train_step(cohort_chunk=...)); 0: not (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cache-dir",
        help="JAX persistent compilation cache (reruns skip XLA compiles; timings unaffected)",
    )
    parser.add_argument("--json", metavar="PATH", help="write the measured numbers as JSON")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.counts = sorted({int(x) for x in str(args.counts).split(",") if x})
    args.meshes = [m.strip() for m in args.meshes.split(";") if m.strip()]
    args.sections = [s for s in args.sections.split(",") if s]
    if not args.counts or min(args.counts) < 1:
        parser.error("--counts must be positive integers")
    if args.steps < 1 or args.steps % SYNC_EVERY:
        parser.error(f"--steps must be a positive multiple of the sync period ({SYNC_EVERY})")
    if args.cohort_chunk < 0:
        parser.error("--cohort-chunk must be >= 0")
    if args.rounds < 1 or args.warmup < 0 or args.mesh_models < 1:
        parser.error("--rounds and --mesh-models must be >= 1, --warmup >= 0")
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {SECTIONS}")
    for spec in args.meshes:
        try:
            _mesh.parse_mesh(spec)
        except ValueError as error:
            parser.error(str(error))
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    if args.cache_dir:
        jax.config.update("jax_compilation_cache_dir", args.cache_dir)
    device = jax.devices()[0]
    print(
        f"device: {device.device_kind} ({device.platform}, {jax.device_count()} device(s), "
        f"{os.cpu_count()} CPU core(s)), jax {jax.__version__}, optax {optax.__version__}, "
        f"mmojax {mmojax.__version__}"
    )
    print(
        "settings: "
        + ", ".join(f"{key}={value}" for key, value in vars(args).items() if key not in ("json",))
        + f"; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    config = bert_config(args)
    need = max(
        max(args.counts) if "scale" in args.sections else 0,
        args.mesh_models if "mesh" in args.sections else 0,
    )
    fns, members = build_members(config, need, args.seed)
    print(
        f"model: BERT classifier, hidden {config.hidden}, {config.layers} layer(s), "
        f"{config.heads} heads, intermediate {config.intermediate}, vocab {config.vocab_size}, "
        f"{parameter_count(members[0]) / 1e6:.3f}M parameters each; batch {args.batch}, "
        f"seq {args.seq}; optimizer: mmojax.multi_model_optimizer() defaults (sync every 10)"
    )
    batch = random_batch(args.batch, args.seq, args.vocab, args.seed)
    steps = Steps(fns)
    results = {
        "device": {
            "kind": device.device_kind,
            "platform": device.platform,
            "count": jax.device_count(),
            "cpu_cores": os.cpu_count(),
        },
        "jax": jax.__version__,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "parameters_per_model": parameter_count(members[0]),
    }
    if "scale" in args.sections:
        results["scale"] = section_scale(args, steps, members, jax.device_put(batch))
    meshes = _meshes(args) if {"mesh", "collectives"} & set(args.sections) else []
    if "mesh" in args.sections:
        results["mesh"] = section_mesh(args, steps, members, batch, meshes)
    if "collectives" in args.sections:
        results["collectives"] = section_collectives(args, members[0], meshes)
    results["total_s"] = time.perf_counter() - start
    print(f"\ntotal {results['total_s']:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
