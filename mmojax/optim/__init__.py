"""The optimizer layer: optax transformations over ``{model_name: params}`` trees.

Imports only jax, numpy and optax. Every public name is re-exported by
``mmojax`` itself.
"""

from mmojax.optim._accumulate import AccumulateState as AccumulateState
from mmojax.optim._accumulate import accumulate_gradients as accumulate_gradients
from mmojax.optim._accumulate import accumulation_steps as accumulation_steps
from mmojax.optim._accumulate import update_or_accumulate as update_or_accumulate
from mmojax.optim._align import DEFAULT_ALIGN_RULES as DEFAULT_ALIGN_RULES
from mmojax.optim._align import Alignment as Alignment
from mmojax.optim._align import AlignRule as AlignRule
from mmojax.optim._align import ParamView as ParamView
from mmojax.optim._align import align_parameters as align_parameters
from mmojax.optim._classify import DEFAULT_RULES as DEFAULT_RULES
from mmojax.optim._classify import PARAM_TYPES as PARAM_TYPES
from mmojax.optim._classify import ParamKey as ParamKey
from mmojax.optim._classify import classify_parameters as classify_parameters
from mmojax.optim._clip import ClipByModelNormState as ClipByModelNormState
from mmojax.optim._clip import clip_by_model_global_norm as clip_by_model_global_norm
from mmojax.optim._cohort import Cohort as Cohort
from mmojax.optim._cohort import per_member as per_member
from mmojax.optim._cohort import stack_models as stack_models
from mmojax.optim._cohort import unstack_models as unstack_models
from mmojax.optim._convergence import ConvergenceState as ConvergenceState
from mmojax.optim._convergence import scale_by_convergence as scale_by_convergence
from mmojax.optim._optimizer import MultiModelOptimizerState as MultiModelOptimizerState
from mmojax.optim._optimizer import convergence_rates as convergence_rates
from mmojax.optim._optimizer import learning_rates as learning_rates
from mmojax.optim._optimizer import multi_model_optimizer as multi_model_optimizer
from mmojax.optim._plan import GROUPINGS as GROUPINGS
from mmojax.optim._plan import SharingPlan as SharingPlan
from mmojax.optim._plan import depth_pairing as depth_pairing
from mmojax.optim._plan import sharing_plan as sharing_plan
from mmojax.optim._schedule import ModelLearningRateState as ModelLearningRateState
from mmojax.optim._schedule import scale_by_model_learning_rate as scale_by_model_learning_rate
from mmojax.optim._schedule import warmup_cosine_schedule as warmup_cosine_schedule
from mmojax.optim._sharing import ShareGradientsState as ShareGradientsState
from mmojax.optim._sharing import share_gradients as share_gradients
from mmojax.optim._sync import SyncState as SyncState
from mmojax.optim._sync import sync_parameters as sync_parameters

__all__ = (
    "DEFAULT_ALIGN_RULES",
    "DEFAULT_RULES",
    "GROUPINGS",
    "PARAM_TYPES",
    "AccumulateState",
    "AlignRule",
    "Alignment",
    "ClipByModelNormState",
    "Cohort",
    "ConvergenceState",
    "ModelLearningRateState",
    "MultiModelOptimizerState",
    "ParamKey",
    "ParamView",
    "ShareGradientsState",
    "SharingPlan",
    "SyncState",
    "accumulate_gradients",
    "accumulation_steps",
    "update_or_accumulate",
    "align_parameters",
    "classify_parameters",
    "clip_by_model_global_norm",
    "convergence_rates",
    "depth_pairing",
    "learning_rates",
    "multi_model_optimizer",
    "per_member",
    "scale_by_convergence",
    "scale_by_model_learning_rate",
    "share_gradients",
    "sharing_plan",
    "stack_models",
    "sync_parameters",
    "unstack_models",
    "warmup_cosine_schedule",
)
