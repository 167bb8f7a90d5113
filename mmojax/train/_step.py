"""The jitted multi-model train and eval steps over one training-state pytree.

A model of ``state.params`` may be a :class:`mmojax.Cohort`: ``k`` models of
one architecture stacked on a leading axis, run by one ``jax.vmap`` of its
``ModelFns`` (one forward and backward for the ``k`` members, each with its
own dropout stream). Its per-model values (losses, metrics, non-finite
counters, learning and convergence rates) are ``(k,)`` arrays.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

import mmojax
from mmojax.data import model_batch
from mmojax.optim._tree import along_members
from mmojax.train import _mesh

# apply_fn(params, batch, *, train, rng) -> outputs; loss_fn(outputs, batch) -> (loss, metrics)
ApplyFn = Callable[..., Any]
LossFn = Callable[[Any, Mapping[str, jax.Array]], tuple[jax.Array, dict[str, jax.Array]]]
# extra_loss(name, {model: outputs (others stop-gradiented)}, batch) -> scalar
ExtraLoss = Callable[[str, Mapping[str, Any], Mapping[str, jax.Array]], jax.Array]


class ModelFns(NamedTuple):
    """How to run and score one model: any Flax (or plain JAX) model fits.

    Attributes:
      apply_fn: ``apply_fn(params, batch, *, train, rng) -> outputs``, pure.
      loss_fn: ``loss_fn(outputs, batch) -> (scalar loss, {metric: scalar})``.
    """

    apply_fn: ApplyFn
    loss_fn: LossFn


class TrainState(NamedTuple):
    """The whole training state, one pytree (checkpointed as is).

    Attributes:
      params: ``{model_name: params}`` (a model may be a :class:`mmojax.Cohort`).
      opt_state: the optimizer state.
      step: micro-batches consumed (int32).
      rng: raw PRNG key data (uint32), split every step for dropout.
      nonfinite: ``{model: int32}`` consecutive steps with a non-finite loss or
        gradient (reset by a finite step); ``(k,)`` for a cohort.
      skipped: ``{model: int32}`` total skipped (non-finite) steps; ``(k,)``
        for a cohort.
    """

    params: dict[str, Any]
    opt_state: Any
    step: jax.Array
    rng: jax.Array
    nonfinite: dict[str, jax.Array]
    skipped: dict[str, jax.Array]


def init_train_state(
    params: Mapping[str, Any], tx: optax.GradientTransformation, seed: int
) -> TrainState:
    """Builds the initial :class:`TrainState` (optimizer state from ``tx.init``)."""
    params = dict(params)
    zeros = {
        m: jnp.zeros([p.size] if isinstance(p, mmojax.Cohort) else [], jnp.int32)
        for m, p in params.items()
    }
    state = TrainState(
        params=params,
        opt_state=tx.init(params),
        step=jnp.zeros([], jnp.int32),
        rng=jax.random.key_data(jax.random.key(seed)),
        nonfinite=zeros,
        skipped=zeros,
    )
    # A donated state must not hold one buffer twice (optimizer states may
    # share constants, and the counters above do): give every leaf its own.
    return jax.tree.map(lambda x: jnp.array(x, copy=True), state)


def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _zero_unless(ok: jax.Array, grad: Any, accumulating: bool) -> Any:
    """``grad`` where ``ok``, zeros elsewhere (a skipped model's or cohort member's gradient).

    For one model whose gradient goes straight to the optimizer, a ``lax.cond``:
    an elementwise ``where`` over every gradient leaf, whose output several
    consumers read, is written out once more; on the CPU backend it cost 16%
    (``independent``) to 25% (``mmo``) of an update-heavy train step. When the
    gradient is only added into an accumulator (``accumulating``) the ``where``
    fuses into that one add, and the conditional's output would be an extra
    buffer instead. A cohort's ``(k,)`` flags select per member.
    """
    if jnp.ndim(ok) == 0 and not accumulating:
        return jax.lax.cond(ok, lambda g: g, lambda g: jax.tree.map(jnp.zeros_like, g), grad)
    return jax.tree.map(lambda g: jnp.where(along_members(ok, g), g, jnp.zeros_like(g)), grad)


def _members_finite(cohort: Any) -> jax.Array:
    """Per member of a cohort, whether all its leaves are finite: ``(k,)``."""
    leaves = [
        jnp.all(jnp.isfinite(x), axis=tuple(range(1, x.ndim))) for x in jax.tree.leaves(cohort)
    ]
    return jnp.all(jnp.stack(leaves), axis=0)


def _member_keys(step_rng: jax.Array, name: str, k: int | None) -> jax.Array:
    """Dropout keys: one per model, or a cohort's ``k``, each from its (member) name.

    Member ``i`` of cohort ``name`` gets the key a model named ``name/i``
    gets, so a cohort trains exactly as its members held separately.
    """
    if k is None:
        return jax.random.fold_in(step_rng, zlib.crc32(name.encode()))
    return jnp.stack(
        [jax.random.fold_in(step_rng, zlib.crc32(f"{name}/{i}".encode())) for i in range(k)]
    )


def _optimizer_metrics(opt_state: Any, names: tuple[str, ...]) -> dict[str, dict[str, jax.Array]]:
    out = {m: {} for m in names}
    try:
        for m, lr in mmojax.learning_rates(opt_state).items():
            out[m]["lr"] = lr
    except ValueError:
        pass  # a user optimizer without per-model rates
    try:
        for m, r in mmojax.convergence_rates(opt_state).items():
            out[m]["conv_rate"] = r
    except ValueError:
        pass  # adaptive=False
    return out


def _coupled_grads(models, extra_loss, params, batch, rngs):
    """Per-model (loss, aux) and gradients when losses couple models' outputs.

    One forward pass per model; model ``n``'s loss sees the others' outputs
    under ``stop_gradient``, so the gradient of the summed loss with respect
    to ``params[n]`` is exactly the gradient of model ``n``'s own loss.
    """

    def total(all_params):
        outputs = {
            n: models[n].apply_fn(all_params[n], model_batch(batch, n), train=True, rng=rngs[n])
            for n in models
        }
        values = {}
        for n in models:
            loss, aux = models[n].loss_fn(outputs[n], model_batch(batch, n))
            view = {m: o if m == n else jax.lax.stop_gradient(o) for m, o in outputs.items()}
            coupling = extra_loss(n, view, batch)
            values[n] = (loss + coupling, {**aux, "task_loss": loss, "coupling_loss": coupling})
        return sum(v[0] for v in values.values()), values

    grads, values = jax.grad(total, has_aux=True)(dict(params))
    return values, grads


def _gradient_cosines(grads):
    """``(a, b, cosine)`` over the keys models ``a`` and ``b`` share (type, shape)."""
    plan = mmojax.sharing_plan(grads)
    flat = jax.tree.leaves(grads)
    names = list(grads)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            dot = na = nb = jnp.zeros([], jnp.float32)
            for group in plan.shared_groups:
                ga = [flat[m.index] for m in group.members if m.model == a]
                gb = [flat[m.index] for m in group.members if m.model == b]
                if not ga or not gb:
                    continue
                # A model with several members of a key contributes their mean.
                va = sum(x.astype(jnp.float32) for x in ga) / len(ga)
                vb = sum(x.astype(jnp.float32) for x in gb) / len(gb)
                dot += jnp.sum(va * vb)
                na += jnp.sum(va * va)
                nb += jnp.sum(vb * vb)
            out.append((a, b, dot / jnp.maximum(jnp.sqrt(na * nb), 1e-30)))
    return out


def _over_members(cohort_chunk: int | None, mesh: jax.sharding.Mesh | None):
    """``f -> f`` mapped over a cohort's member axis: one ``vmap``, or chunks of it."""
    if cohort_chunk is None:
        return jax.vmap
    if isinstance(cohort_chunk, bool) or not isinstance(cohort_chunk, int) or cohort_chunk < 1:
        raise ValueError(f"cohort_chunk must be an int >= 1 or None, got {cohort_chunk!r}")
    spread = 1 if mesh is None else mesh.shape.get(_mesh.MODEL_AXIS, 1)
    if spread > 1:
        raise ValueError(
            f"cohort_chunk={cohort_chunk} loops over a cohort's members, which the mesh's "
            f"'{_mesh.MODEL_AXIS}' axis spreads over {spread} device groups; leave cohort_chunk "
            "unset on such a mesh (each device already holds only its members)"
        )

    def mapped(fn):
        return lambda *xs: jax.lax.map(lambda x: fn(*x), xs, batch_size=cohort_chunk)

    return mapped


def make_train_step(
    models: Mapping[str, ModelFns],
    tx: optax.GradientTransformation,
    *,
    extra_loss: ExtraLoss | None = None,
    gradient_cosines: bool = False,
    donate: bool = True,
    jit: bool = True,
    mesh: jax.sharding.Mesh | None = None,
    cohort_chunk: int | None = None,
) -> Callable[[TrainState, Mapping[str, jax.Array]], tuple[TrainState, dict[str, Any]]]:
    """Returns ``train_step(state, batch) -> (state, metrics)``, one XLA program.

    Every model sees the same examples: the batch itself, or its own tokens
    of them in a paired batch (see :func:`mmojax.data.model_batch`). For
    each model (a Python loop over a static tuple, unrolled in the trace):
    forward with dropout, loss and gradient; then one ``tx.update`` over the
    whole multi-model tree with ``losses={model: loss}``; then
    ``optax.apply_updates``. When ``tx`` accumulates gradients
    (:func:`mmojax.accumulate_gradients`, or ``multi_model_optimizer`` with
    ``gradient_accumulation_steps > 1``), a micro-batch that only accumulates
    skips both: it adds its gradient and losses into the accumulator, in a
    ``lax.cond`` whose other branch is the whole update
    (:func:`mmojax.optim.update_or_accumulate`).

    A model whose ``state.params`` entry is a :class:`mmojax.Cohort` of
    ``k`` stacked members runs as ``jax.vmap`` of its ``ModelFns`` over the
    model axis, all members on the model's view of the batch, member ``i``
    with the dropout key of a model named ``name/i``; its loss, gradient and
    metrics come back stacked (``metrics[name]["loss"]`` is ``(k,)``), and
    the step gives the parameters the ``k`` members would get as separate
    models ``name/0`` ... ``name/{k-1}`` (tested).

    A model whose loss or gradient is not finite is *skipped* for the step:
    its gradient enters the optimizer as zeros, its loss as NaN (the
    convergence estimator ignores it) and its parameters are kept as they
    were; ``state.nonfinite`` counts consecutive such steps so the caller can
    stop a run that does not recover.

    Args:
      models: ``{name: ModelFns}``; names must match ``state.params``.
      tx: the optimizer, usually :func:`mmojax.multi_model_optimizer`.
      extra_loss: ``extra_loss(name, outputs, batch) -> scalar`` added to
        model ``name``'s loss, where ``outputs`` holds every model's outputs
        with the *other* models' under ``stop_gradient`` (function-space
        coupling such as mutual learning or distillation; see
        :mod:`mmojax.train._coupling`). Not with cohorts.
      gradient_cosines: also report, for every pair of models, the cosine
        similarity of their gradients on the keys they share
        (``metrics[a]["gcos/" + b]``), the paper's "gradient flow". Not
        with cohorts.
      donate: donate the input state's buffers (the caller must not reuse it).
      jit: return the jitted function (``False`` for composing into your own).
      mesh: a ``(model, data)`` mesh (:func:`mmojax.train.make_mesh`): the
        step is jitted with explicit ``in_shardings``/``out_shardings`` (the
        state by :func:`~mmojax.train.state_shardings`, the batch split over
        ``data``, metrics replicated), built once per state and batch
        structure; place the state with :func:`~mmojax.train.shard_state`
        and each batch with :func:`~mmojax.train.shard_batch`.
      cohort_chunk: run each cohort's forward and backward over chunks of
        this many members (``jax.lax.map`` with ``batch_size``: a loop over
        chunks, each chunk one ``vmap``) instead of one ``vmap`` of all
        members. The same parameters (to float tolerance); the activations
        held at once shrink from ``k`` members' to ``cohort_chunk``'s, which
        on a CPU keeps a large cohort's step in cache (see
        ``benchmarks/bench_scale.py``). ``None`` (default): one ``vmap``,
        what an accelerator wants. Not with a mesh whose ``model`` axis
        spreads the members over devices.

    Returns:
      The step function. ``metrics[model]`` holds ``loss``, the model's own
      metrics, ``grad_norm`` (before clipping/sharing), ``finite``, ``lr`` and
      ``conv_rate`` where the optimizer has them.
    """
    names = tuple(models)
    if not names:
        raise ValueError("make_train_step needs at least one model")
    over_members = _over_members(cohort_chunk, mesh)
    accumulating = mmojax.accumulation_steps(tx) > 1

    def train_step(state: TrainState, batch):
        cohorts = {n: p.size for n, p in state.params.items() if isinstance(p, mmojax.Cohort)}
        if cohorts and (extra_loss is not None or gradient_cosines):
            raise ValueError(
                "extra_loss and gradient_cosines do not support cohorts yet "
                f"(cohorts: {sorted(cohorts)})"
            )
        rng, step_rng = jax.random.split(jax.random.wrap_key_data(state.rng))
        # Each model's dropout stream depends only on its name, not on which
        # other models train beside it, so a model trained alone and in a joint
        # run (without sharing) sees the same randomness: comparisons are paired.
        model_rngs = [_member_keys(step_rng, n, cohorts.get(n)) for n in names]
        if extra_loss is None:
            values, grads = {}, {}
            for name, model_rng in zip(names, model_rngs):
                fns, view = models[name], model_batch(batch, name)

                def loss_of(params, model_rng, fns=fns, view=view):
                    outputs = fns.apply_fn(params, view, train=True, rng=model_rng)
                    return fns.loss_fn(outputs, view)

                value_and_grad = jax.value_and_grad(loss_of, has_aux=True)
                if name in cohorts:  # one vmapped forward and backward for the k members
                    values[name], grad = over_members(value_and_grad)(
                        state.params[name].params, model_rng
                    )
                    grads[name] = mmojax.Cohort(grad)
                else:
                    values[name], grads[name] = value_and_grad(state.params[name], model_rng)
        else:
            values, grads = _coupled_grads(
                models, extra_loss, state.params, batch, dict(zip(names, model_rngs))
            )
        losses, finite, metrics = {}, {}, {}
        for name in names:
            (loss, aux), grad = values[name], grads[name]
            if name in cohorts:
                ok = jnp.logical_and(jnp.isfinite(loss), _members_finite(grad))
                norm = jnp.sqrt(
                    sum(
                        jnp.sum(jnp.square(g), axis=tuple(range(1, g.ndim)))
                        for g in jax.tree.leaves(grad)
                    )
                )
            else:
                ok = jnp.logical_and(jnp.isfinite(loss), _all_finite(grad))
                norm = optax.tree.norm(grad)
            finite[name] = ok
            grads[name] = _zero_unless(ok, grad, accumulating)
            losses[name] = jnp.where(ok, loss, jnp.nan)
            metrics[name] = {**aux, "loss": loss, "grad_norm": norm, "finite": ok}
        if gradient_cosines:
            for a, b, cos in _gradient_cosines(grads):
                metrics[a][f"gcos/{b}"] = cos
                metrics[b][f"gcos/{a}"] = cos

        def update(params, opt_state, grads, losses):
            updates, opt_state = tx.update(grads, opt_state, params, losses=losses)
            stepped = optax.apply_updates(params, updates)
            kept = {
                m: jax.tree.map(
                    lambda new, old, ok=finite[m]: jnp.where(along_members(ok, new), new, old),
                    stepped[m],
                    params[m],
                )
                for m in names
            }
            return kept, opt_state

        # A micro-batch that only accumulates adds its gradient and nothing else.
        params, opt_state = mmojax.update_or_accumulate(
            tx, update, grads, state.opt_state, state.params, losses=losses
        )
        for m, extra in _optimizer_metrics(opt_state, names).items():
            metrics[m].update(extra)
        new_state = TrainState(
            params=params,
            opt_state=opt_state,
            step=state.step + 1,
            rng=jax.random.key_data(rng),
            nonfinite={m: jnp.where(finite[m], 0, state.nonfinite[m] + 1) for m in names},
            skipped={m: state.skipped[m] + (~finite[m]).astype(jnp.int32) for m in names},
        )
        return new_state, metrics

    if not jit:
        return train_step
    donate_argnums = (0,) if donate else ()
    if mesh is None:
        return jax.jit(train_step, donate_argnums=donate_argnums)
    return _on_mesh(train_step, mesh, donate_argnums)


def _on_mesh(train_step, mesh, donate_argnums):
    """``train_step`` jitted with the mesh layout's explicit shardings.

    The shardings depend on which models are cohorts, so the jitted function
    is built on the first call per (state, batch) tree structure and reused:
    steps of one structure and shapes compile once.
    """
    compiled: dict[Any, Callable] = {}

    def step(state, batch):
        key = (jax.tree.structure(state), jax.tree.structure(batch))
        if key not in compiled:
            state_sharding = _mesh.state_shardings(state, mesh)
            compiled[key] = jax.jit(
                train_step,
                in_shardings=(state_sharding, _mesh.batch_shardings(batch, mesh)),
                out_shardings=(state_sharding, _mesh.replicated(mesh)),
                donate_argnums=donate_argnums,
            )
        return compiled[key](state, batch)

    step.compiled = compiled  # for tests: the jitted functions, one per structure
    return step


def make_eval_step(
    models: Mapping[str, ModelFns],
    outputs_fn: Callable[[Any, Mapping[str, jax.Array]], dict[str, jax.Array]],
    *,
    jit: bool = True,
    mesh: jax.sharding.Mesh | None = None,
) -> Callable[[Mapping[str, Any], Mapping[str, jax.Array]], dict[str, dict[str, jax.Array]]]:
    """Returns ``eval_step(params, batch) -> {model: outputs_fn(outputs, batch)}``.

    Runs every model in eval mode (no dropout) in one program; ``outputs_fn``
    reduces a model's raw outputs to what the host-side evaluator needs (e.g.
    per-example predictions and losses). A :class:`mmojax.Cohort` runs
    vmapped, its outputs stacked on a leading member axis. With a ``mesh``
    the outputs come back replicated (readable on every process), the
    parameters keep their layout and the batch is taken as it is given.
    """
    names = tuple(models)

    def eval_step(params, batch):
        out = {}
        for name in names:
            view = model_batch(batch, name)

            def run(p, fns=models[name], view=view):
                return outputs_fn(fns.apply_fn(p, view, train=False, rng=None), view)

            if isinstance(params[name], mmojax.Cohort):
                out[name] = jax.vmap(run)(params[name].params)
            else:
                out[name] = run(params[name])
        return out

    if not jit:
        return eval_step
    if mesh is None:
        return jax.jit(eval_step)
    return jax.jit(eval_step, out_shardings=_mesh.replicated(mesh))
