"""The optimizer in real train steps: donation, injected hyperparameters, vmap, the plan cache."""

import logging
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import WEIGHTS, cohort_optimizer, make_tree

import mmojax
from mmojax.optim import _plan

LOSSES = {"a": 1.0, "b": 2.0, "c": 0.5}


def grads_at(params, i):
    return jax.tree.map(lambda x: jnp.sin(x * (i + 1.0)), params)


def assert_trees_equal(a, b, rtol=0.0, atol=0.0):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def retyped(old, value):
    """``value`` with the dtype and weak type of ``old`` (a new value, not a new signature)."""
    return old - old + value


def assert_trees_differ(a, b):
    assert any(not np.allclose(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def train(tx, params, steps, donate):
    def step(p, s, i):
        u, s = tx.update(grads_at(p, i), s, p, losses=LOSSES)
        return optax.apply_updates(p, u), s

    fn = jax.jit(step, donate_argnums=(0, 1) if donate else ())
    p, s = jax.tree.map(jnp.copy, params), tx.init(params)
    for i in range(steps):
        p, s = fn(p, s, jnp.float32(i))
    return p


@pytest.mark.parametrize("grouping", ["type_shape", "role_depth"])
def test_donated_and_plain_steps_give_identical_parameters(grouping):
    # 25 updates span the sync steps 5, 10, ..., 25 and two convergence estimates.
    params = make_tree(1)
    tx = mmojax.multi_model_optimizer(
        learning_rate=1e-2,
        warmup_steps=3,
        total_steps=40,
        model_weights=WEIGHTS,
        sync_every=5,
        convergence_window=4,
        convergence_update_every=8,
        clip_norm=1.0,
        grouping=grouping,
    )
    donated = train(tx, params, 25, donate=True)
    plain = train(tx, params, 25, donate=False)
    assert_trees_differ(donated, params)
    assert_trees_equal(donated, plain)


def _entry_copies(compiled, min_elements):
    """``copy`` instructions of the entry computation moving at least ``min_elements``."""
    text = compiled.as_text()
    entry = text[text.index("ENTRY") :]
    out = []
    for line in entry.splitlines():
        match = re.search(r"= \w+\[([\d,]*)\]\S* copy\(", line)
        if match:
            dims = [int(d) for d in match.group(1).split(",") if d]
            if int(np.prod(dims)) >= min_elements:
                out.append(line.strip())
    return out


def _donated_step(tx, params):
    def step(p, s, g):
        u, s = tx.update(g, s, p, losses=LOSSES)
        return optax.apply_updates(p, u), s

    return jax.jit(step, donate_argnums=(0, 1)).lower(params, tx.init(params), params).compile()


@pytest.mark.parametrize("grouping", ["type_shape", "role", "role_depth"])
def test_sync_in_a_donated_step_copies_no_state(grouping):
    # The HLO evidence of the sync design (mmojax/optim/_sync.py): no parameter-sized copy
    # and no parameter-sized temporary, although the rare branch recomputes the inner update.
    params = {m: {"w": jnp.ones((64, 64)), "b": jnp.ones(64)} for m in "abc"}
    tx = mmojax.sync_parameters(optax.adamw(1e-3), beta=0.1, sync_every=10, grouping=grouping)
    compiled = _donated_step(tx, params)
    assert _entry_copies(compiled, 64) == []
    assert compiled.memory_analysis().temp_size_in_bytes < 64 * 64 * 4
    # The whole-update conditional of the previous design copied all of adam's state.
    text = compiled.as_text()
    assert text.count("conditional(") >= 1


def _fused_computations(compiled):
    """``({name: [(instruction, opcode, operands)]}, names the entry's fusions call)``."""
    text = compiled.as_text()
    comps, entry = {}, ""
    for match in re.finditer(r"^(ENTRY )?%([\w.\-]+) .*?\{\n(.*?)^\}", text, re.S | re.M):
        body = match.group(3)
        if match.group(1):
            entry = body
        comps[match.group(2)] = [
            (m.group(1), m.group(2), re.findall(r"%([\w.\-]+)", m.group(3)))
            for m in re.finditer(r"^\s*(?:ROOT )?%([\w.\-]+) = [^=]*?([\w\-]+)\((.*)$", body, re.M)
        ]
    return comps, re.findall(r"fusion\(.*calls=%([\w.\-]+)", entry)


def _reused_after_sqrt(compiled):
    """Values computed from a ``sqrt`` with more than one use, in the entry's fusions.

    XLA:CPU evaluates a fused expression once per use, so a second use of
    Adam's ``m / (sqrt(v) + eps)`` inside the fused apply recomputes it. Uses
    by ``slice`` are not counted: the views of a fused leaf are disjoint.
    """
    comps, called = _fused_computations(compiled)
    out = []
    for name in called:
        instructions = comps[name]
        tainted = {n for n, opcode, _ in instructions if opcode == "sqrt"}
        for n, _, operands in instructions:
            if tainted & set(operands):
                tainted.add(n)
        uses = {n: 0 for n in tainted}
        for _, opcode, operands in instructions:
            if opcode == "slice":
                continue  # disjoint slices of a fused leaf (q, k, v) read each element once
            for o in operands:
                if o in uses:
                    uses[o] += 1
        out += [f"{name}: {n} x{k}" for n, k in uses.items() if k > 1]
    return out


@pytest.mark.parametrize("grouping", ["type_shape", "role", "role_depth"])
def test_an_off_sync_update_evaluates_the_inner_update_once(grouping):
    # _sync._gated_move keeps the inner update one term of the sync move: written as
    # where(is_sync, u + beta (avg - (p + u)), u) it had three uses, each a recomputation
    # of Adam's square root and division in the fused apply.
    params = {m: {"w": jnp.ones((64, 64)), "b": jnp.ones(64)} for m in "abc"}
    adamw = _donated_step(optax.adamw(1e-3), params)
    assert _fused_computations(adamw)[1] and _reused_after_sqrt(adamw) == []
    for tx in (
        mmojax.sync_parameters(optax.adamw(1e-3), beta=0.1, sync_every=10, grouping=grouping),
        mmojax.multi_model_optimizer(learning_rate=1e-3, grouping=grouping),
    ):
        assert _reused_after_sqrt(_donated_step(tx, params)) == []


def test_multi_model_optimizer_in_a_donated_step_copies_no_state():
    params = {m: {"mlp": {"kernel": jnp.ones((64, 64)), "bias": jnp.ones(64)}} for m in "abc"}
    tx = mmojax.multi_model_optimizer(
        learning_rate=1e-3, model_weights={"a": 1.0, "b": 2.0}, grouping="type_shape"
    )
    assert _entry_copies(_donated_step(tx, params), 64) == []


def test_accumulate_only_call_copies_no_state():
    params = {m: {"w": jnp.ones((64, 64))} for m in "ab"}
    tx = mmojax.accumulate_gradients(optax.adamw(1e-3), gradient_accumulation_steps=2)
    assert _entry_copies(_donated_step(tx, params), 64) == []


def _accumulating_optimizer(**overrides):
    """The tests' short-schedule optimizer (every stage within a few updates), accumulating 3."""
    return cohort_optimizer(
        "role_depth", WEIGHTS, **{"gradient_accumulation_steps": 3, **overrides}
    )


def test_accumulation_steps_names_the_k_of_an_accumulating_optimizer():
    assert mmojax.accumulation_steps(_accumulating_optimizer()) == 3
    assert mmojax.accumulation_steps(_accumulating_optimizer(gradient_accumulation_steps=1)) == 1
    inner = optax.adamw(1e-3)
    assert mmojax.accumulation_steps(inner) == 1
    assert (
        mmojax.accumulation_steps(mmojax.accumulate_gradients(inner, gradient_accumulation_steps=4))
        == 4
    )
    # A wrapper is another transformation: the plain path, still correct.
    assert mmojax.accumulation_steps(optax.chain(_accumulating_optimizer())) == 1


def _micro_batch_step(tx, through_cond):
    def step(p, s, i):
        g = grads_at(p, i)

        def update(p, s, g, losses):
            u, s = tx.update(g, s, p, losses=losses)
            return optax.apply_updates(p, u), s

        if through_cond:
            return mmojax.update_or_accumulate(tx, update, g, s, p, losses=LOSSES)
        return update(p, s, g, LOSSES)

    return jax.jit(step, donate_argnums=(0, 1))


def test_update_or_accumulate_gives_the_optax_path_parameters_and_state():
    # 14 micro-batches = 4 updates (and 2 held), spanning the sync at 4 and the estimator.
    params = make_tree(2)
    tx = _accumulating_optimizer()
    out = {}
    for through_cond in (True, False):
        fn = _micro_batch_step(tx, through_cond)
        p, s = jax.tree.map(jnp.copy, params), tx.init(params)
        for i in range(14):
            p, s = fn(p, s, jnp.float32(i))
        out[through_cond] = (p, s)
    assert_trees_differ(out[True][0], params)
    assert_trees_equal(out[True], out[False], rtol=1e-6, atol=1e-7)
    assert int(out[True][1].mini_step) == 14 % 3


def test_an_accumulate_only_micro_batch_copies_no_state():
    params = {m: {"w": jnp.ones((64, 64))} for m in "ab"}
    tx = mmojax.accumulate_gradients(optax.adamw(1e-3), gradient_accumulation_steps=2)
    compiled = (
        _micro_batch_step(tx, through_cond=True)
        .lower(params, tx.init(params), jnp.float32(0))
        .compile()
    )
    assert _entry_copies(compiled, 64) == []
    # The whole update, apply_updates included, sits in one branch of the entry's conditional.
    entry = compiled.as_text()[compiled.as_text().index("ENTRY") :]
    assert "conditional(" in entry


def test_inject_hyperparams_share_gradients_without_recompiling():
    grads = make_tree(2)
    tx = optax.inject_hyperparams(mmojax.share_gradients)(alpha=0.2)
    traces = []

    @jax.jit
    def step(g, state):
        traces.append(1)
        return tx.update(g, state)

    state = tx.init(grads)
    out, state = step(grads, state)
    assert_trees_equal(
        out, mmojax.share_gradients(0.2).update(grads, None)[0], rtol=1e-6, atol=1e-7
    )
    state.hyperparams["alpha"] = retyped(state.hyperparams["alpha"], 0.7)
    out, state = step(grads, state)
    assert_trees_equal(
        out, mmojax.share_gradients(0.7).update(grads, None)[0], rtol=1e-6, atol=1e-7
    )
    assert len(traces) == 1


def test_inject_hyperparams_multi_model_optimizer_matches_and_never_recompiles():
    params = make_tree(3)
    settings = dict(
        learning_rate=1e-2,
        alpha=0.3,
        beta=0.2,
        sync_every=3,
        warmup_steps=2,
        total_steps=30,
        convergence_window=3,
        convergence_update_every=2,
    )
    static = ("gradient_accumulation_steps", "convergence_window", "convergence_update_every")
    injected = optax.inject_hyperparams(mmojax.multi_model_optimizer, static_args=static)(
        **settings
    )
    traces = []

    def step(p, s, i):
        traces.append(1)
        u, s = injected.update(grads_at(p, i), s, p, losses=LOSSES)
        return optax.apply_updates(p, u), s

    fn = jax.jit(step)
    p, s = params, injected.init(params)
    for i in range(7):  # sync steps 3 and 6
        p, s = fn(p, s, jnp.float32(i))
    ref = train(mmojax.multi_model_optimizer(**settings), params, 7, donate=False)
    assert_trees_equal(p, ref, rtol=1e-5, atol=1e-6)
    # A schedule-driven or hand-made change of alpha and the learning rate: same program.
    for name, value in (("alpha", 0.05), ("learning_rate", 3e-3), ("sync_every", 2)):
        s.hyperparams[name] = retyped(s.hyperparams[name], value)
    p, s = fn(p, s, jnp.float32(7))
    assert len(traces) == 1


def test_array_hyperparameters_equal_floats():
    params = make_tree(4)
    as_floats = mmojax.multi_model_optimizer(
        learning_rate=1e-2, alpha=0.3, beta=0.2, sync_every=2, warmup_steps=0, model_weights=WEIGHTS
    )
    as_arrays = mmojax.multi_model_optimizer(
        learning_rate=jnp.float32(1e-2),
        alpha=jnp.float32(0.3),
        beta=jnp.float32(0.2),
        sync_every=jnp.int32(2),
        warmup_steps=0,
        model_weights={m: jnp.float32(w) for m, w in WEIGHTS.items()},
    )
    assert_trees_equal(
        train(as_floats, params, 5, donate=False),
        train(as_arrays, params, 5, donate=False),
        rtol=1e-6,
        atol=1e-7,
    )


def test_traced_model_weights_equal_floats():
    params = make_tree(5)
    grads = grads_at(params, 0)

    @jax.jit
    def mixed(w):
        tx = mmojax.share_gradients(0.5, model_weights={"a": w, "b": 0.8, "c": 1.2})
        return tx.update(grads, None)[0]

    ref = mmojax.share_gradients(0.5, model_weights=WEIGHTS).update(grads, None)[0]
    assert_trees_equal(mixed(jnp.float32(1.0)), ref, rtol=1e-6, atol=1e-7)


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


@pytest.mark.parametrize("offsets", [(0, 0, 0), (0, 1, 2)])
def test_vmap_over_stacked_problems_equals_the_loop(offsets):
    # k independent multi-model problems held stacked; with offsets their counters
    # differ, so the batched sync predicate differs member by member.
    k, steps = 3, 7
    tx = mmojax.sync_parameters(optax.adam(1e-2), beta=0.3, sync_every=3)
    problems = [make_tree(10 + j) for j in range(k)]

    def init(p, offset):
        s = tx.init(p)
        return s._replace(count=jnp.int32(offset))

    def step(p, s, i):
        u, s = tx.update(grads_at(p, i), s, p)
        return optax.apply_updates(p, u), s

    singles = []
    for p, off in zip(problems, offsets):
        s = init(p, off)
        for i in range(steps):
            p, s = jax.jit(step)(p, s, jnp.float32(i))
        singles.append(p)
    batched = jax.jit(jax.vmap(step, in_axes=(0, 0, None)))
    p = _stack(problems)
    s = _stack([init(q, off) for q, off in zip(problems, offsets)])
    for i in range(steps):
        p, s = batched(p, s, jnp.float32(i))
    assert_trees_equal(p, _stack(singles), rtol=1e-6, atol=1e-7)


def test_vmapped_sync_stays_a_conditional():
    # A batched lax.cond would become a select running the sync on every step.
    tx = mmojax.sync_parameters(optax.adam(1e-2), beta=0.3, sync_every=3)
    params = _stack([make_tree(0), make_tree(1)])
    state = jax.vmap(tx.init)(params)
    jaxpr = jax.make_jaxpr(jax.vmap(lambda g, s, p: tx.update(g, s, p)))(params, state, params)
    text = str(jaxpr)
    assert "cond[" in text
    # The predicate of that conditional is a reduction over the batch (any member syncing).
    assert "reduce_or" in text


def test_plan_is_built_once(monkeypatch, caplog):
    calls = []
    real = _plan.make_plan
    monkeypatch.setattr(_plan, "make_plan", lambda *a, **k: calls.append(1) or real(*a, **k))
    _plan._plan_from_key.cache_clear()
    params = {"x": {"odd_leaf": jnp.ones((3, 3))}, "y": {"odd_leaf": jnp.ones((3, 3))}}
    tx = mmojax.multi_model_optimizer(learning_rate=1e-2, sync_every=1)
    with caplog.at_level(logging.WARNING):
        state = tx.init(params)
        step = jax.jit(lambda g, s, p: tx.update(g, s, p, losses={"x": 1.0, "y": 1.0}))
        step(params, state, params)
        jax.jit(lambda g, s, p: tx.update(g, s, p, losses={"x": 1.0, "y": 2.0}))(
            params, state, params
        )
    assert len(calls) == 1
    assert sum("match no alignment rule" in r.getMessage() for r in caplog.records) == 1


def test_integer_leaves_are_left_untouched():
    params = {m: {"w": jnp.ones(3), "counter": jnp.array([5, 7, 9], jnp.int32)} for m in "ab"}
    params["b"]["counter"] = jnp.array([1, 2, 3], jnp.int32)
    for grouping in ("type_shape", "role_depth"):
        tx = mmojax.multi_model_optimizer(
            learning_rate=0.5, beta=0.5, sync_every=1, warmup_steps=0, grouping=grouping
        )
        p, s = params, tx.init(params)
        for _ in range(10):
            grads = jax.tree.map(lambda x: jnp.ones(x.shape, jnp.float32), p)
            grads = {m: {"w": g["w"], "counter": jnp.zeros(3, jnp.int32)} for m, g in grads.items()}
            u, s = jax.jit(tx.update)(grads, s, p, losses={"a": 1.0, "b": 1.0})
            p = optax.apply_updates(p, u)
        assert p["a"]["counter"].tolist() == [5, 7, 9]
        assert p["b"]["counter"].tolist() == [1, 2, 3]
        assert p["a"]["counter"].dtype == jnp.int32
        assert_trees_differ(p, params)
    plan = mmojax.sharing_plan(params)
    assert all("counter" not in m.path for g in plan.groups for m in g.members)


def test_import_mmojax_loads_no_model_stack():
    code = (
        "import sys, mmojax; heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('flax', 'transformers', 'orbax', 'matplotlib')]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_optimizer_layer_has_no_import_cycles():
    import ast
    import pathlib

    root = pathlib.Path(mmojax.optim.__file__).parent
    graph = {}
    for path in root.glob("_*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "mmojax.optim":
                deps |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "mmojax.optim._"
            ):
                deps.add(node.module.rsplit(".", 1)[1])
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                assert not any(
                    n.split(".")[0] in ("flax", "transformers", "orbax")
                    or n.startswith(("mmojax.train", "mmojax.models", "mmojax.data"))
                    for n in names
                ), f"{path.name} imports {names}"
        graph[path.stem] = deps

    def visit(node, stack):
        assert node not in stack, f"import cycle: {' -> '.join([*stack, node])}"
        for dep in graph.get(node, ()):
            visit(dep, [*stack, node])

    for module in graph:
        visit(module, [])
    assert "_pool" not in graph["_plan"] and "_weights" in graph["_pool"]
