"""Evaluation: run an attack over data with counting and re-verification; metrics; result files and plots."""

from edgewise.eval.metrics import (
    area_under_curve,
    eps_grid_for,
    mean_distance,
    median_distance,
    robust_accuracy,
    robust_accuracy_curve,
    success_rate,
)
from edgewise.eval.result import DISTANCES, AttackResult
from edgewise.eval.run import Attack, run_attack, verify
from edgewise.eval.sanity import Finding, SanityWarning, check_evaluation

__all__ = [
    "DISTANCES",
    "Attack",
    "AttackResult",
    "Finding",
    "SanityWarning",
    "area_under_curve",
    "check_evaluation",
    "eps_grid_for",
    "mean_distance",
    "median_distance",
    "robust_accuracy",
    "robust_accuracy_curve",
    "run_attack",
    "success_rate",
    "verify",
]
