"""``mmojax reproduce``: the paper's experiments, run with seeds and reported honestly."""

from mmojax.reproduce._experiments import ReproduceOptions as ReproduceOptions
from mmojax.reproduce._experiments import plan_runs as plan_runs
from mmojax.reproduce._experiments import reproduce as reproduce
from mmojax.reproduce._report import write_report as write_report
from mmojax.reproduce._specs import EXPERIMENTS as EXPERIMENTS
from mmojax.reproduce._specs import METHODS as METHODS

__all__ = ("EXPERIMENTS", "METHODS", "ReproduceOptions", "plan_runs", "reproduce", "write_report")
