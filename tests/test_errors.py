"""Bad input raises a clear error at construction or init."""

import math

import jax
import jax.numpy as jnp
import optax
import pytest

import mmojax

PARAMS = {"a": {"w": jnp.zeros(2)}, "b": {"w": jnp.zeros(2)}}


@pytest.mark.parametrize("value", [-0.1, 1.5, math.nan])
def test_alpha_beta_range(value):
    with pytest.raises(ValueError, match="alpha must be in"):
        mmojax.share_gradients(alpha=value)
    with pytest.raises(ValueError, match="beta must be in"):
        mmojax.sync_parameters(optax.identity(), beta=value)
    with pytest.raises(ValueError, match="alpha must be in"):
        mmojax.multi_model_optimizer(alpha=value)


def test_every_negative():
    with pytest.raises(ValueError, match="sync_every must be an integer >= 0"):
        mmojax.sync_parameters(optax.identity(), sync_every=-1)
    with pytest.raises(ValueError, match="sync_every must be an integer >= 0"):
        mmojax.multi_model_optimizer(sync_every=-3)


@pytest.mark.parametrize(
    "weights,match",
    [
        ({"a": -1.0}, "finite and >= 0"),
        ({"a": math.inf}, "finite and >= 0"),
        ({"a": math.nan}, "finite and >= 0"),
        ({"a": "x"}, "must be a number"),
        ({"a": 0.0, "b": 0.0}, "all be zero"),
    ],
)
def test_bad_weight_values(weights, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mmojax.share_gradients(model_weights=weights)
    with pytest.raises((ValueError, TypeError), match=match):
        mmojax.multi_model_optimizer(model_weights=weights)


def test_weights_naming_unknown_models():
    for tx in (
        mmojax.share_gradients(model_weights={"zzz": 1.0}),
        mmojax.sync_parameters(optax.identity(), model_weights={"zzz": 1.0}),
        mmojax.multi_model_optimizer(model_weights={"zzz": 1.0}),
    ):
        with pytest.raises(ValueError, match=r"unknown models \['zzz'\]"):
            tx.init(PARAMS)


@pytest.mark.parametrize(
    "bad,exc,match",
    [
        ([jnp.zeros(2)], TypeError, "must be a mapping"),
        (jnp.zeros(2), TypeError, "must be a mapping"),
        ({}, ValueError, "is empty"),
        ({"a": {}}, ValueError, "has no parameters"),
    ],
)
def test_bad_params_tree(bad, exc, match):
    for tx in (
        mmojax.share_gradients(),
        mmojax.sync_parameters(optax.identity()),
        mmojax.scale_by_convergence(),
        mmojax.multi_model_optimizer(),
    ):
        with pytest.raises(exc, match=match):
            tx.init(bad)
    with pytest.raises(exc, match=match):
        mmojax.classify_parameters(bad)


def test_losses_missing_a_model():
    tx = mmojax.multi_model_optimizer()
    state = tx.init(PARAMS)
    with pytest.raises(ValueError, match=r"missing models \['b'\]"):
        tx.update(PARAMS, state, PARAMS, losses={"a": 1.0})
    with pytest.raises(ValueError, match="needs the per-model losses"):
        tx.update(PARAMS, state, PARAMS)
    tx = mmojax.multi_model_optimizer(gradient_accumulation_steps=2)
    with pytest.raises(ValueError, match=r"missing models \['b'\]"):
        tx.update(PARAMS, tx.init(PARAMS), PARAMS, losses={"a": 1.0})


def test_other_hyperparameters():
    with pytest.raises(ValueError, match="reduction must be one of"):
        mmojax.share_gradients(reduction="max")
    with pytest.raises(ValueError, match="convergence_window must be an integer >= 2"):
        mmojax.scale_by_convergence(convergence_window=1)
    with pytest.raises(ValueError, match="max_convergence_scale must be >= min_convergence_scale"):
        mmojax.scale_by_convergence(min_convergence_scale=2.0, max_convergence_scale=1.0)
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        mmojax.multi_model_optimizer(gradient_accumulation_steps=0)
    with pytest.raises(ValueError, match="total_steps must be"):
        mmojax.multi_model_optimizer(warmup_steps=100, total_steps=50)
    with pytest.raises(ValueError, match="clip_norm must be"):
        mmojax.multi_model_optimizer(clip_norm=-1.0)
    with pytest.raises(ValueError, match="learning_rate must be"):
        mmojax.multi_model_optimizer(learning_rate=-1.0)


def test_sync_wraps_a_transformation():
    with pytest.raises(TypeError, match="wraps an optax transformation"):
        mmojax.sync_parameters(0.1)


def test_structural_hyperparameters_must_be_static():
    # Injected as arrays, a buffer size cannot be honoured: say which argument to make static.
    tx = optax.inject_hyperparams(mmojax.multi_model_optimizer)(learning_rate=1e-3)
    with pytest.raises(TypeError, match=r"static_args=\('convergence_window'"):
        jax.jit(tx.init)(PARAMS)
    with pytest.raises(ValueError, match="convergence_window must be an integer"):
        mmojax.multi_model_optimizer(convergence_window=jnp.float32(3.0))


def test_sync_needs_params():
    tx = mmojax.sync_parameters(optax.identity(), sync_every=1)
    with pytest.raises(ValueError, match="needs params"):
        tx.update(PARAMS, tx.init(PARAMS))


def test_labels_with_wrong_structure():
    with pytest.raises(ValueError, match="structure of the parameter tree"):
        mmojax.share_gradients(labels={"a": {"w": 1}}).init(PARAMS)
