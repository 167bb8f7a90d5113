"""Uniform model construction: parameters plus a pure apply function."""

from __future__ import annotations

import dataclasses
import logging
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.core import unfreeze
from transformers.models.roberta.modeling_flax_roberta import create_position_ids_from_input_ids

from ._config import ARCHS, TASKS, ModelConfig
from ._config import preset as make_preset
from ._hf import hf_module
from ._params import swap_conv1d_layout

logger = logging.getLogger(__name__)

PyTree = Any
Batch = Mapping[str, Any]
ApplyFn = Callable[..., Any]

_INIT_LENGTH = 8  # parameter shapes do not depend on the dummy sequence length


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """One trainable model: configuration, initial parameters and forward pass.

    Attributes:
        name: Model name (e.g. ``"bert"``), used as a key by training code.
        config: Backbone configuration.
        task: One of ``TASKS``.
        num_labels: Number of classes (2 for ``"qa"``: start and end).
        seed: Seed used to initialise ``params``.
        module: The underlying unbound ``flax.linen`` module.
        params: Initial float32 parameter pytree (nested dicts, HF names; GPT-2's
            ``Conv1D`` kernels held ``(in, out)``, like every other kernel, the
            transpose of Hugging Face's Flax layout: see :func:`swap_conv1d_layout`).
        apply_fn: Pure forward pass
            ``apply_fn(params, batch, *, train, rng=None) -> logits``; for
            ``"qa"`` it returns ``(start_logits, end_logits)``.
    """

    name: str
    config: ModelConfig
    task: str
    num_labels: int
    seed: int
    module: nn.Module
    params: PyTree
    apply_fn: ApplyFn

    @property
    def init_params(self) -> PyTree:
        """Alias of :attr:`params` (the freshly initialised parameters)."""
        return self.params

    def init(self, rng: jax.Array) -> PyTree:
        """Initialises a fresh parameter pytree.

        Args:
            rng: PRNG key.

        Returns:
            Float32 parameters with the same structure as :attr:`params`.
        """
        return swap_held_layout(self.config, _init_params(self.module, self.config, rng))


def swap_held_layout(config: ModelConfig, params: PyTree) -> PyTree:
    """Converts parameters of ``config``'s model between Hugging Face's layout and mmojax's.

    The two differ only for GPT-2, whose ``Conv1D`` kernels Hugging Face stores
    ``(out, in)`` and mmojax holds ``(in, out)`` (:func:`swap_conv1d_layout`); other
    architectures are returned as they are. The map is its own inverse.
    """
    return swap_conv1d_layout(params) if config.arch == "gpt2" else params


def _int32(x: Any) -> jax.Array:
    return jnp.asarray(x, dtype=jnp.int32)


def _module_args(config: ModelConfig, batch: Batch) -> tuple[jax.Array, ...]:
    """Positional inputs expected by the module for ``config.arch``."""
    input_ids = _int32(batch["input_ids"])
    mask = batch.get("attention_mask")
    attention_mask = jnp.ones_like(input_ids) if mask is None else _int32(mask)
    if config.arch == "gpt2":
        return input_ids, attention_mask
    if config.arch == "bert":
        token_types = batch.get("token_type_ids")
        token_type_ids = jnp.zeros_like(input_ids) if token_types is None else _int32(token_types)
        position_ids = jnp.broadcast_to(
            jnp.arange(input_ids.shape[-1], dtype=jnp.int32), input_ids.shape
        )
    else:  # roberta: a single token type; positions start after the pad id.
        token_type_ids = jnp.zeros_like(input_ids)
        position_ids = create_position_ids_from_input_ids(input_ids, config.pad_token_id)
    return input_ids, attention_mask, token_type_ids, position_ids, None


def _call_module(
    module: nn.Module,
    config: ModelConfig,
    variables: PyTree,
    batch: Batch,
    deterministic: bool,
    rngs: dict[str, jax.Array],
    method: str = "apply",
) -> Any:
    """Calls ``module.apply`` or ``module.init`` with arch-specific inputs."""
    args = _module_args(config, batch)
    kwargs: dict[str, Any] = {"deterministic": deterministic}
    if config.arch != "gpt2":
        kwargs["return_dict"] = False
    if method == "init":
        return module.init(rngs, *args, **kwargs)
    return module.apply(variables, *args, rngs=rngs, **kwargs)


def _init_params(module: nn.Module, config: ModelConfig, rng: jax.Array) -> PyTree:
    """Initialises float32 parameters of ``module``."""
    params_rng, dropout_rng = jax.random.split(rng)
    length = min(_INIT_LENGTH, config.max_length)
    dummy = {
        "input_ids": np.full((1, length), (config.pad_token_id + 1) % config.vocab_size),
        "attention_mask": np.ones((1, length), np.int32),
    }
    variables = _call_module(
        module,
        config,
        None,
        dummy,
        deterministic=True,
        rngs={"params": params_rng, "dropout": dropout_rng},
        method="init",
    )
    params = unfreeze(nn.unbox(variables["params"]))
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params)


def make_apply_fn(module: nn.Module, config: ModelConfig, task: str) -> ApplyFn:
    """Builds the pure forward function of a model.

    Args:
        module: Unbound flax module from :func:`hf_module`.
        config: Backbone configuration.
        task: One of ``TASKS``.

    Returns:
        ``apply_fn(params, batch, *, train, rng=None)``. ``batch`` holds int
        arrays ``input_ids`` ``[B, L]``, ``attention_mask`` ``[B, L]`` and
        optionally ``token_type_ids`` (used by BERT only); other keys are
        ignored. RoBERTa derives position ids from ``input_ids`` and
        ``config.pad_token_id`` (as in HF); GPT-2 counts real tokens in
        ``attention_mask``, so left and right padding both work. ``params`` are in the
        layout mmojax holds (GPT-2's ``Conv1D`` kernels ``(in, out)``). ``train`` must be a
        Python bool: when true, dropout is applied using ``rng``. The function is not
        jitted so it can be traced inside an outer ``jax.jit`` together with other models.
    """

    def apply_fn(params: PyTree, batch: Batch, *, train: bool, rng: jax.Array | None = None) -> Any:
        if train and rng is None and config.dropout > 0:
            raise ValueError("apply_fn(train=True) needs an rng for dropout")
        rngs = {"dropout": rng} if train and rng is not None else {}
        variables = {"params": swap_held_layout(config, params)}  # XLA folds it into the dots
        outputs = _call_module(module, config, variables, batch, deterministic=not train, rngs=rngs)
        if task == "qa":
            return outputs[0], outputs[1]
        return outputs[0] if isinstance(outputs, tuple) else outputs

    apply_fn.__name__ = f"apply_{config.arch}_{task}"
    return apply_fn


def build_model(
    config: ModelConfig,
    task: str,
    num_labels: int = 2,
    seed: int = 0,
    *,
    name: str | None = None,
) -> Model:
    """Builds a randomly initialised model for ``task``.

    Args:
        config: Backbone configuration.
        task: ``"classification"``, ``"token_classification"`` or ``"qa"``.
        num_labels: Number of classes (ignored for ``"qa"``).
        seed: Initialisation seed.
        name: Model name; defaults to ``config.arch``.

    Returns:
        The :class:`Model`.

    Raises:
        ValueError: For an unknown task or a non-positive ``num_labels``.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"num_labels must be a positive int, got {num_labels!r}")
    labels = 2 if task == "qa" else num_labels
    module = hf_module(config, task, labels)
    params = swap_held_layout(config, _init_params(module, config, jax.random.PRNGKey(seed)))
    model = Model(
        name=name or config.arch,
        config=config,
        task=task,
        num_labels=labels,
        seed=seed,
        module=module,
        params=params,
        apply_fn=make_apply_fn(module, config, task),
    )
    logger.debug("built %s (%s, %s) with seed %d", model.name, config.arch, task, seed)
    return model


def derive_seed(seed: int, name: str) -> int:
    """Derives a per-model seed from a global seed and the model name.

    The result depends only on ``(seed, name)``, not on the order or set of
    other models, so a model starts from the same weights whether it is
    trained alone or jointly.

    Args:
        seed: Global seed.
        name: Model name.

    Returns:
        A non-negative 31-bit int.
    """
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode())])
    return int(state.generate_state(1, dtype=np.uint32)[0] & 0x7FFFFFFF)


def _parse_names(names: str | Sequence[str]) -> list[str]:
    items = names.split(",") if isinstance(names, str) else list(names)
    parsed = [item.strip().lower() for item in items if item.strip()]
    if not parsed:
        raise ValueError(f"no model names given; valid names: {list(ARCHS)}")
    unknown = [item for item in parsed if item not in ARCHS]
    if unknown:
        raise ValueError(f"unknown model name(s) {unknown}; valid names: {list(ARCHS)}")
    duplicates = sorted({item for item in parsed if parsed.count(item) > 1})
    if duplicates:
        raise ValueError(f"model name(s) given more than once: {duplicates}")
    return parsed


def build_models(
    names: str | Sequence[str],
    preset: str = "small",
    task: str = "classification",
    *,
    vocab_size: int,
    max_length: int,
    num_labels: int = 2,
    seed: int = 0,
    **overrides: Any,
) -> dict[str, Model]:
    """Builds several models from a preset, one per architecture name.

    Args:
        names: Comma-separated string (``"bert,gpt2,roberta"``) or sequence of
            architecture names; each may appear once.
        preset: Size preset name (see :data:`PRESETS`).
        task: Task shared by all models.
        vocab_size: Vocabulary size.
        max_length: Maximum sequence length.
        num_labels: Number of classes.
        seed: Global seed; per-model seeds come from :func:`derive_seed`.
        **overrides: :class:`ModelConfig` field overrides applied to every
            model (e.g. ``dropout=0.0``).

    Returns:
        Models keyed by name, in the order given.

    Raises:
        ValueError: For unknown or repeated names, or invalid settings.
    """
    models: dict[str, Model] = {}
    for name in _parse_names(names):
        config = make_preset(
            preset, name, vocab_size=vocab_size, max_length=max_length, **overrides
        )
        models[name] = build_model(config, task, num_labels, derive_seed(seed, name), name=name)
    return models
