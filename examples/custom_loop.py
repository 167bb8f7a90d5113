"""mmojax in a hand-written JAX/Optax training loop with your own Flax models.

Three small, differently shaped classifiers learn three related toy tasks
(random vectors, labels from a noisy version of one shared linear rule). Their
parameters live in one tree ``{model_name: params}``; one jitted step computes
every model's loss and gradient and applies one multi-model optimizer update.

Layers named ``attention``/``mlp``/``norm``/``embed``/``classifier`` are
classified by mmojax's default rules, so leaves of equal (type, shape) in
different models share gradients and are periodically synchronised.

Run: ``python examples/custom_loop.py --steps 200``. The last line printed is
``final: {json}`` with each run's initial and final eval losses per model.
"""

import argparse
import functools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import mmojax

IN_DIM, NUM_CLASSES = 16, 4


class Block(nn.Module):
    """A residual token-free "transformer-ish" block: attention-like + MLP."""

    width: int
    mlp_ratio: int

    @nn.compact
    def __call__(self, h):
        h = h + nn.Dense(self.width, name="attention")(nn.LayerNorm(name="norm1")(h))
        y = nn.gelu(
            nn.Dense(self.width * self.mlp_ratio, name="mlp_in")(nn.LayerNorm(name="norm2")(h))
        )
        return h + nn.Dense(self.width, name="mlp_out")(y)


class Classifier(nn.Module):
    """Embedding layer, ``depth`` blocks, a classifier head."""

    width: int
    depth: int
    mlp_ratio: int = 2

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(self.width, name="embed")(x)
        for i in range(self.depth):
            h = Block(self.width, self.mlp_ratio, name=f"block_{i}")(h)
        return nn.Dense(NUM_CLASSES, name="classifier")(nn.LayerNorm(name="final_norm")(h))


MODELS = {  # "small" and "deep" share every (type, shape) key; "wide_mlp" all but its MLP.
    "small": Classifier(width=32, depth=1),
    "deep": Classifier(width=32, depth=2),
    "wide_mlp": Classifier(width=32, depth=1, mlp_ratio=4),
}


@jax.jit
def make_rules(key):
    """One linear labelling rule per model: a shared rule plus a little noise."""
    k_shared, *k_models = jax.random.split(key, 1 + len(MODELS))
    shared = jax.random.normal(k_shared, (IN_DIM, NUM_CLASSES))
    return {m: shared + 0.3 * jax.random.normal(k, shared.shape) for m, k in zip(MODELS, k_models)}


@functools.partial(jax.jit, static_argnames="batch")
def sample(rules, key, batch):
    """A batch ``{model: (x, labels)}`` of fresh random vectors for every model."""
    out = {}
    for m, k in zip(MODELS, jax.random.split(key, len(MODELS))):
        x = jax.random.normal(k, (batch, IN_DIM))
        out[m] = (x, jnp.argmax(x @ rules[m], axis=-1))
    return out


@jax.jit
def init_params(key):
    """The multi-model tree ``{model_name: params}`` (one jit: faster than eager)."""
    dummy = jnp.zeros((1, IN_DIM))
    keys = jax.random.split(key, len(MODELS))
    return {m: model.init(k, dummy)["params"] for (m, model), k in zip(MODELS.items(), keys)}


def loss_fn(model, params, x, y):
    """Mean softmax cross-entropy of one model on one batch."""
    logits = model.apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@jax.jit
def _eval_losses(params, data):
    """Every model's loss on its own held-out batch, in one jitted call."""
    return {m: loss_fn(MODELS[m], params[m], *data[m]) for m in MODELS}


def eval_losses(params, data):
    """``{model: loss}`` as Python floats, in ``MODELS`` order."""
    losses = _eval_losses(params, data)
    return {m: float(losses[m]) for m in MODELS}


def train(tx, name, steps, log_every, seed=0, batch=64):
    """Trains all models jointly with ``tx``; returns initial/final eval losses."""
    key = jax.random.PRNGKey(seed)
    k_task, k_init, k_eval, k_train = jax.random.split(key, 4)
    rules = make_rules(k_task)
    params = init_params(k_init)
    opt_state = tx.init(params)

    @jax.jit
    def train_step(params, opt_state, batch):
        losses, grads = {}, {}
        for m, model in MODELS.items():  # a Python loop: unrolled once at trace time
            grad_fn = jax.value_and_grad(functools.partial(loss_fn, model))
            losses[m], grads[m] = grad_fn(params[m], *batch[m])
        updates, opt_state = tx.update(grads, opt_state, params, losses=losses)
        return optax.apply_updates(params, updates), opt_state, losses

    eval_data = sample(rules, k_eval, batch=1024)
    initial = eval_losses(params, eval_data)
    print(f"[{name}] initial eval loss: " + ", ".join(f"{m}={v:.3f}" for m, v in initial.items()))
    for step, k in enumerate(jax.random.split(k_train, steps), start=1):
        params, opt_state, losses = train_step(params, opt_state, sample(rules, k, batch=batch))
        if step % log_every == 0 or step == steps:
            try:
                lrs = {m: float(v) for m, v in mmojax.learning_rates(opt_state).items()}
            except ValueError:  # a chain without mmojax's per-model rates
                lrs = {}
            print(
                f"[{name}] step {step:4d}  "
                + "  ".join(
                    f"{m}: loss={float(losses[m]):.3f}" + (f" lr={lrs[m]:.2e}" if m in lrs else "")
                    for m in MODELS
                )
            )
    final = eval_losses(params, eval_data)
    print(f"[{name}] final eval loss:   " + ", ".join(f"{m}={v:.3f}" for m, v in final.items()))
    return {"initial": initial, "final": final}


def main():
    """Trains the models twice: with ``multi_model_optimizer`` and with a custom chain."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="optimizer updates per run")
    parser.add_argument("--log-every", type=int, default=20)
    args = parser.parse_args()
    steps = max(args.steps, 2)

    # The sharing plan only needs shapes: which leaves pool across models?
    print(mmojax.sharing_plan(jax.eval_shape(init_params, jax.random.PRNGKey(0))))

    # 1) The paper's optimizer: sharing + AdamW + per-model lr (warmup, cosine
    #    decay, convergence scaling) + periodic parameter sync, in one transform.
    warmup = max(1, steps // 10)
    mmo = mmojax.multi_model_optimizer(
        learning_rate=3e-3,
        warmup_steps=warmup,
        total_steps=steps,
        weight_decay=1e-4,
        alpha=0.2,
        beta=0.1,
        sync_every=10,
        convergence_window=min(20, steps),
        convergence_update_every=10,
    )
    results = {"multi_model_optimizer": train(mmo, "mmo", steps, args.log_every)}

    # 2) The same building blocks composed into your own optax chain; sync_parameters
    #    wraps it (like optax.lookahead): it moves the parameters after the inner update.
    chain = mmojax.sync_parameters(
        optax.chain(mmojax.share_gradients(alpha=0.2), optax.adamw(1e-3)),
        beta=0.1,
        sync_every=10,
    )
    results["custom_chain"] = train(chain, "chain", steps, args.log_every)
    print("final: " + json.dumps(results))


if __name__ == "__main__":
    main()
