"""Loading local Hugging Face checkpoints into mmojax task models.

A checkpoint directory holds ``config.json`` and one of the weight files in
:data:`WEIGHT_FILES`. The task model is built from the checkpoint's own config
(every field: sizes, ``layer_norm_eps``, activation, ``type_vocab_size``, ...),
the backbone weights are copied in exactly, and what the checkpoint lacks (the
task head, usually) is initialised from ``seed``. Nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax.serialization import msgpack_restore
from flax.traverse_util import flatten_dict, unflatten_dict

from ._build import Model, _init_params, make_apply_fn, swap_held_layout
from ._config import ARCHS, TASKS
from ._hf import hf_module, model_config_from_hf

logger = logging.getLogger(__name__)

WEIGHT_FILES: tuple[str, ...] = (
    "flax_model.msgpack",
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
)
"""Weight files :func:`load_pretrained` reads, in order of precedence (the first
present wins; the order of ``FlaxPreTrainedModel.from_pretrained``: native Flax
weights first, then safetensors, then the PyTorch pickle, which needs torch)."""

BACKBONE_PREFIX: dict[str, str] = {"bert": "bert", "gpt2": "transformer", "roberta": "roberta"}
"""Top-level parameter name of each architecture's backbone in a task model."""

_HEAD_SUFFIXES = {
    "ForSequenceClassification": "classification",
    "ForTokenClassification": "token_classification",
    "ForQuestionAnswering": "qa",
}

# PyTorch buffers saved next to the weights that are not parameters (transformers
# ignores them too): BERT's position ids, GPT-2's causal mask.
_BUFFERS = re.compile(r"(^|\.)(position_ids|attn\.bias|attn\.masked_bias)$")

# Entries of config.json that describe the task or the file, not the backbone.
_TASK_FIELDS = (
    "architectures",
    "id2label",
    "label2id",
    "num_labels",
    "_name_or_path",
    "transformers_version",
    "torch_dtype",
    "dtype",
)


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What :func:`load_pretrained` did with a checkpoint's weights.

    Attributes:
        path: The checkpoint directory.
        weights_file: The weight file read.
        arch: Architecture of the checkpoint (its ``model_type``).
        task: Task of the built model.
        num_labels: Outputs of the head (2 for ``"qa"``).
        loaded: Model parameter paths (``"bert/encoder/..."``) set from the checkpoint.
        new: Model parameter paths not in the checkpoint, initialised from the seed.
        unused: Checkpoint entries, under the checkpoint's own names, that the
            model does not use (e.g. a pooler the head ignores, an LM head, or a
            head for another task or number of labels).
        label_names: The checkpoint's ``id2label`` names in id order when its
            head was loaded (a classification head of the same task and size),
            else ``None``.
    """

    path: str
    weights_file: str
    arch: str
    task: str
    num_labels: int
    loaded: tuple[str, ...]
    new: tuple[str, ...]
    unused: tuple[str, ...]
    label_names: tuple[str, ...] | None = None

    def __str__(self) -> str:
        lines = [
            f"{self.weights_file}: {len(self.loaded)} parameters loaded into a {self.arch} "
            f"{self.task} model ({self.num_labels} outputs)",
            f"  new (initialised): {', '.join(self.new) or 'none'}",
            f"  unused (in the checkpoint only): {', '.join(self.unused) or 'none'}",
        ]
        return "\n".join(lines)


def _not_a_directory(path: str) -> FileNotFoundError:
    reason = "is a file, not a directory" if os.path.isfile(path) else "does not exist"
    return FileNotFoundError(
        f"{path!r} {reason}: mmojax loads local checkpoint directories (config.json plus "
        f"weights) and never downloads. For a hub model, download it first, e.g. "
        f"`huggingface-cli download NAME --local-dir DIR` or "
        f"`huggingface_hub.snapshot_download(NAME, local_dir=DIR)`, then pass DIR."
    )


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads ``config.json`` of a local checkpoint directory.

    Args:
        path: Checkpoint directory.

    Returns:
        The parsed JSON object.

    Raises:
        FileNotFoundError: If ``path`` is not a directory or has no ``config.json``.
        ValueError: If ``config.json`` is not a JSON object.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise _not_a_directory(path)
    file = os.path.join(path, "config.json")
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{path} has no config.json: not a Hugging Face checkpoint")
    with open(file, encoding="utf-8") as f:
        fields = json.load(f)
    if not isinstance(fields, dict):
        raise ValueError(f"{file} does not hold a JSON object")
    return fields


# Settings of PyTorch models that the transformers Flax modules do not implement: such a
# checkpoint would load and silently compute something else.
_UNSUPPORTED = {
    "bert": {"position_embedding_type": "absolute"},
    "roberta": {"position_embedding_type": "absolute"},
    "gpt2": {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False},
}


def _check_supported(arch: str, fields: Mapping[str, Any], config_file: str) -> None:
    for key, default in _UNSUPPORTED[arch].items():
        if fields.get(key, default) != default:
            raise ValueError(
                f"{config_file} sets {key}={fields[key]!r}, which the transformers Flax "
                f"{arch} model (and so mmojax) does not implement; only {default!r} is supported"
            )


def _checkpoint_task(fields: Mapping[str, Any]) -> str | None:
    """The task whose head ``architectures`` names (``BertForTokenClassification``...)."""
    for name in fields.get("architectures") or ():
        for suffix, task in _HEAD_SUFFIXES.items():
            if str(name).endswith(suffix):
                return task
    return None


def _checkpoint_labels(fields: Mapping[str, Any]) -> tuple[str, ...] | None:
    """Label names of a checkpoint's task head, in id order."""
    id2label = fields.get("id2label")
    if isinstance(id2label, Mapping) and id2label:
        names = {int(k): str(v) for k, v in id2label.items()}
        return tuple(names[i] for i in sorted(names))
    # save_pretrained leaves out HF's default, two labels LABEL_0 and LABEL_1.
    count = fields.get("num_labels", 2)
    return tuple(f"LABEL_{i}" for i in range(count)) if isinstance(count, int) else None


def _as_float32(array: Any) -> np.ndarray:
    """Floating arrays (float16 and bfloat16 too) as float32 NumPy arrays; others unchanged."""
    array = np.asarray(array)
    return (
        array.astype(np.float32, copy=False) if jnp.issubdtype(array.dtype, jnp.floating) else array
    )


def _read_safetensors(files: list[str]) -> tuple[dict[str, np.ndarray], bool]:
    """Reads safetensors files; returns ``({name: array}, names_are_flax)``.

    ``save_pretrained(safe_serialization=True)`` of a Flax model writes Flax
    names joined by dots and ``format: flax`` metadata; other files hold PyTorch names.
    """
    from safetensors import safe_open

    tensors: dict[str, np.ndarray] = {}
    flax_names = False
    for file in files:
        # framework="flax": NumPy cannot hold bfloat16 checkpoints.
        with safe_open(file, framework="flax") as f:
            flax_names = (f.metadata() or {}).get("format") == "flax"
            for key in f.keys():
                if flax_names or not _BUFFERS.search(key):
                    tensors[key] = _as_float32(f.get_tensor(key))
    return tensors, flax_names


def _read_torch(file: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"{file} is a PyTorch pickle and reading it needs the package `torch`, which "
            f"is not installed: `pip install torch`, or convert the checkpoint to "
            f"model.safetensors (which mmojax reads without torch)"
        ) from None
    state = torch.load(file, map_location="cpu", weights_only=True)
    return {
        key: (value.float() if value.is_floating_point() else value).numpy()
        for key, value in state.items()
        if not _BUFFERS.search(key)
    }


def _read_weights(path: str) -> tuple[str, dict[tuple[str, ...], tuple[str, np.ndarray]], bool]:
    """Reads the first weight file of :data:`WEIGHT_FILES` present in ``path``.

    Returns:
        ``(file, {name tuple: (name in the file, array)}, names_are_flax)``.
    """
    for name in WEIGHT_FILES:
        file = os.path.join(path, name)
        if os.path.isfile(file):
            break
    else:
        sharded = ("flax_model.msgpack.index.json", "pytorch_model.bin.index.json")
        present = [n for n in sharded if os.path.isfile(os.path.join(path, n))]
        hint = f" ({', '.join(present)}: sharding mmojax does not read)" if present else ""
        raise FileNotFoundError(f"no weights in {path}: looked for {', '.join(WEIGHT_FILES)}{hint}")
    if name == "flax_model.msgpack":
        with open(file, "rb") as f:
            state = flatten_dict(msgpack_restore(f.read()))
        return file, {k: ("/".join(k), _as_float32(v)) for k, v in state.items()}, True
    if name == "pytorch_model.bin":
        tensors, flax_names = _read_torch(file), False
    else:
        files = [file]
        if name.endswith(".index.json"):
            with open(file, encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
            files = [os.path.join(path, shard) for shard in sorted(set(weight_map.values()))]
        tensors, flax_names = _read_safetensors(files)
    return file, {tuple(k.split(".")): (k, v) for k, v in tensors.items()}, flax_names


def _pytorch_to_flax(
    key: tuple[str, ...], array: np.ndarray, target: Mapping[tuple[str, ...], Any]
) -> tuple[tuple[str, ...], np.ndarray]:
    """Renames one PyTorch entry to its Flax name (and layout) in ``target``.

    ``weight`` is a LayerNorm ``scale``, an ``embedding`` table or a dense
    ``kernel`` (transposed: PyTorch ``Linear`` stores ``(out, in)``, Flax ``(in, out)``;
    GPT-2's ``Conv1D`` stores ``(in, out)`` and Flax's ``FlaxConv1D`` ``(out, in)``, the
    same transpose); old checkpoints name LayerNorm parameters ``gamma``/``beta``.
    """
    module, leaf = key[:-1], key[-1]
    if leaf in ("weight", "gamma"):
        for name in ("scale", "embedding"):
            if module + (name,) in target:
                return module + (name,), array
        if leaf == "weight" and array.ndim == 2:
            return module + ("kernel",), array.T
    if leaf == "beta":
        return module + ("bias",), array
    return key, array


def _match(
    checkpoint: Mapping[tuple[str, ...], tuple[str, np.ndarray]],
    flax_names: bool,
    target: Mapping[tuple[str, ...], Any],
    prefix: str,
    use_head: bool,
) -> tuple[dict[tuple[str, ...], tuple[str, np.ndarray]], list[str]]:
    """Maps checkpoint entries onto model paths.

    Returns:
        ``({model path: (checkpoint name, array)}, unused checkpoint names)``.
    """
    # A base-model checkpoint (BertModel, GPT2Model) has no prefix: all of it is backbone.
    has_prefix = any(key[0] == prefix for key in checkpoint)
    matched: dict[tuple[str, ...], tuple[str, np.ndarray]] = {}
    unused = []
    for key, (entry, array) in checkpoint.items():
        if has_prefix and key[0] != prefix and not use_head:
            unused.append(entry)
            continue
        path = key if has_prefix else (prefix, *key)
        if not flax_names:
            path, array = _pytorch_to_flax(path, array, target)
        if path in target:
            matched[path] = (entry, array)
        else:
            unused.append(entry)
    return matched, unused


def load_pretrained(
    path: str | os.PathLike[str],
    *,
    arch: str | None = None,
    task: str | None = None,
    num_labels: int | None = None,
    name: str | None = None,
    seed: int = 0,
    dropout: float | None = None,
) -> tuple[Model, LoadReport]:
    """Builds a task model from a local Hugging Face checkpoint directory.

    The model is the one :func:`build_model` makes, sized by the checkpoint's
    ``config.json`` (``ModelConfig.hf_config`` keeps all its fields). Weights come
    from the first of :data:`WEIGHT_FILES` present: PyTorch names are renamed
    and transposed to Flax's, exactly as ``transformers`` does; a base-model
    checkpoint (``BertModel``, ``GPT2Model``) or one with the prefix
    (``bert.``/``transformer.``/``roberta.``) both load. The task head loads too
    when the checkpoint has one for the same task and number of labels (its
    ``architectures`` names ``*ForSequenceClassification``,
    ``*ForTokenClassification`` or ``*ForQuestionAnswering``, as checkpoints
    written by :func:`export_model` do); otherwise it is new, initialised from
    ``seed``. New and unused entries are logged and listed in the report.

    GPT-2 checkpoints usually have no pad token: the model's ``pad_token_id``
    becomes the checkpoint's ``eos_token_id`` (see :func:`gpt2_pad_token_id`);
    GPT-2 models find padding through ``attention_mask`` only. RoBERTa position
    ids start after the checkpoint's pad id (1 in real RoBERTa checkpoints).

    Args:
        path: Local checkpoint directory.
        arch: ``"bert"``, ``"gpt2"`` or ``"roberta"``; must equal the
            checkpoint's ``model_type`` (MiniLM checkpoints are ``"bert"``).
            ``None`` takes the ``model_type``.
        task: One of ``TASKS``; ``None`` takes the task of the checkpoint's head.
        num_labels: Classes of the head (ignored for ``"qa"``); ``None`` takes
            the checkpoint head's, when it has one for ``task``.
        name: Model name; defaults to ``arch``.
        seed: Seed of the new parameters (the head).
        dropout: The model's dropout rate (hidden states, attention, head);
            ``None`` keeps the checkpoint's hidden dropout.

    Returns:
        ``(model, report)``: ``model.params`` holds the loaded weights (GPT-2's
        ``Conv1D`` kernels ``(in, out)``, as :func:`build_model` holds them).

    Raises:
        FileNotFoundError: If ``path`` is not a local directory, or has no
            ``config.json`` or no weight file.
        ImportError: For a ``pytorch_model.bin`` without torch installed.
        ValueError: For a ``model_type`` other than ``arch``, a task or number
            of labels that cannot be inferred, or a weight whose shape differs
            from the model's (the message names the file, the entry and both
            shapes).

    Examples:
        >>> import tempfile, transformers
        >>> d = tempfile.mkdtemp()
        >>> cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
        ...                               num_attention_heads=2, intermediate_size=32)
        >>> transformers.FlaxBertModel(cfg).save_pretrained(d)
        >>> model, report = load_pretrained(d, arch="bert", task="classification", num_labels=3)
        >>> report.new
        ('classifier/bias', 'classifier/kernel')
    """
    path = os.fspath(path)
    fields = read_config(path)
    config_file = os.path.join(path, "config.json")
    model_type = fields.get("model_type")
    if arch is None:
        arch = model_type
        if arch not in ARCHS:
            raise ValueError(
                f"{config_file} has model_type {model_type!r}; mmojax loads {list(ARCHS)}"
            )
    elif arch not in ARCHS:
        raise ValueError(f"arch must be one of {list(ARCHS)}, got {arch!r}")
    elif model_type != arch:
        raise ValueError(
            f"{config_file} is a {model_type!r} checkpoint (model_type), not {arch!r}: "
            f"pass it as {model_type!r} or give a {arch!r} checkpoint"
        )
    _check_supported(arch, fields, config_file)
    checkpoint_task = _checkpoint_task(fields)
    task = task or checkpoint_task
    if task is None:
        raise ValueError(
            f"task is required: {config_file} names no task head "
            f"(architectures {fields.get('architectures')})"
        )
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    labels = _checkpoint_labels(fields) if checkpoint_task == task else None
    if task == "qa":
        num_labels = 2
    elif num_labels is None:
        if labels is None:
            raise ValueError(
                f"num_labels is required: {config_file} has no {task} head to take it from"
            )
        num_labels = len(labels)
    use_head = labels is not None and (task == "qa" or len(labels) == num_labels)

    backbone_fields = {k: v for k, v in fields.items() if k not in _TASK_FIELDS}
    config = model_config_from_hf(arch, backbone_fields, dropout=dropout)
    module = hf_module(config, task, num_labels)
    rng = jax.random.PRNGKey(seed)
    target = flatten_dict(jax.eval_shape(lambda: _init_params(module, config, rng)))

    weights_file, checkpoint, flax_names = _read_weights(path)
    matched, unused = _match(checkpoint, flax_names, target, BACKBONE_PREFIX[arch], use_head)
    mismatched = [
        f"{entry} {tuple(array.shape)} (model {'/'.join(p)} {tuple(target[p].shape)})"
        for p, (entry, array) in matched.items()
        if tuple(array.shape) != tuple(target[p].shape)
    ]
    if mismatched:
        raise ValueError(
            f"{weights_file} does not fit the model that {config_file} describes; "
            f"checkpoint entry (shape) vs model parameter (shape): " + "; ".join(mismatched)
        )
    # Only the new parameters are initialised: under jit, XLA drops the rest of the
    # initialisation (a second, eager init of the whole backbone costs seconds to minutes).
    # The values are those of build_model(config, task, num_labels, seed), up to float32
    # rounding (jit and eager evaluation of the initialisers may differ in the last bit).
    new = [p for p in target if p not in matched]

    @jax.jit
    def init_new() -> dict[tuple[str, ...], jax.Array]:
        initial = flatten_dict(_init_params(module, config, rng))
        return {p: initial[p] for p in new}

    params = {**init_new(), **{p: jnp.asarray(entry[1]) for p, entry in matched.items()}}
    report = LoadReport(
        path=path,
        weights_file=weights_file,
        arch=arch,
        task=task,
        num_labels=num_labels,
        loaded=tuple("/".join(p) for p in target if p in matched),
        new=tuple("/".join(p) for p in target if p not in matched),
        unused=tuple(sorted(unused)),
        label_names=labels if use_head and task != "qa" else None,
    )
    model = Model(
        name=name or arch,
        config=config,
        task=task,
        num_labels=num_labels,
        seed=seed,
        module=module,
        params=swap_held_layout(config, unflatten_dict({p: params[p] for p in target})),
        apply_fn=make_apply_fn(module, config, task),
    )
    _log(report, model.name, BACKBONE_PREFIX[arch])
    return model, report


def _log(report: LoadReport, name: str, prefix: str) -> None:
    logger.info("%s: loaded %d parameters from %s", name, len(report.loaded), report.weights_file)
    backbone = [p for p in report.new if p.split("/")[0] == prefix]
    head = [p for p in report.new if p.split("/")[0] != prefix]
    if backbone:
        logger.warning(
            "%s: backbone parameters missing from %s, newly initialised: %s",
            name,
            report.weights_file,
            ", ".join(backbone),
        )
    if head:
        logger.info("%s: new %s head, initialised: %s", name, report.task, ", ".join(head))
    if report.unused:
        logger.info(
            "%s: unused entries of %s: %s", name, report.weights_file, ", ".join(report.unused)
        )
