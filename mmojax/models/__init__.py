"""Transformer models (BERT, GPT-2, RoBERTa) built from Hugging Face Flax modules.

Parameters are plain pytrees with Hugging Face names and every model exposes a
pure ``apply_fn(params, batch, *, train, rng=None)`` so several models can be
trained inside one ``jax.jit``. Models are randomly initialised from a
:class:`ModelConfig` or loaded from local Hugging Face checkpoints
(:func:`load_pretrained`), and exported as such checkpoints (:func:`export_model`);
nothing is downloaded.
"""

from ._build import Model as Model
from ._build import build_model as build_model
from ._build import build_models as build_models
from ._build import derive_seed as derive_seed
from ._build import make_apply_fn as make_apply_fn
from ._config import ARCHS as ARCHS
from ._config import PRESETS as PRESETS
from ._config import TASKS as TASKS
from ._config import ModelConfig as ModelConfig
from ._config import preset as preset
from ._export import architecture_name as architecture_name
from ._export import export_model as export_model
from ._gpt2_heads import GPT2QuestionAnsweringHead as GPT2QuestionAnsweringHead
from ._gpt2_heads import GPT2SequenceClassifier as GPT2SequenceClassifier
from ._gpt2_heads import GPT2TokenClassifier as GPT2TokenClassifier
from ._gpt2_heads import last_token_index as last_token_index
from ._hf import hf_config as hf_config
from ._losses import IGNORE_INDEX as IGNORE_INDEX
from ._losses import classification_loss as classification_loss
from ._losses import qa_loss as qa_loss
from ._losses import token_classification_loss as token_classification_loss
from ._params import conv1d_kernel_paths as conv1d_kernel_paths
from ._params import flatten_params as flatten_params
from ._params import parameter_breakdown as parameter_breakdown
from ._params import parameter_count as parameter_count
from ._params import parameter_table as parameter_table
from ._params import swap_conv1d_layout as swap_conv1d_layout
from ._pretrained import BACKBONE_PREFIX as BACKBONE_PREFIX
from ._pretrained import WEIGHT_FILES as WEIGHT_FILES
from ._pretrained import LoadReport as LoadReport
from ._pretrained import load_pretrained as load_pretrained
from ._pretrained import read_config as read_config

__all__ = [
    "ARCHS",
    "BACKBONE_PREFIX",
    "IGNORE_INDEX",
    "PRESETS",
    "TASKS",
    "WEIGHT_FILES",
    "GPT2QuestionAnsweringHead",
    "GPT2SequenceClassifier",
    "GPT2TokenClassifier",
    "LoadReport",
    "Model",
    "ModelConfig",
    "architecture_name",
    "build_model",
    "build_models",
    "classification_loss",
    "conv1d_kernel_paths",
    "derive_seed",
    "export_model",
    "flatten_params",
    "hf_config",
    "last_token_index",
    "load_pretrained",
    "make_apply_fn",
    "parameter_breakdown",
    "parameter_count",
    "parameter_table",
    "preset",
    "qa_loss",
    "read_config",
    "swap_conv1d_layout",
    "token_classification_loss",
]
