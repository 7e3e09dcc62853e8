"""Certified minimal adversarial distances of small ReLU networks by mixed-integer programming.

``minimal`` solves, per sample, the program of Tjeng, Xiao & Tedrake (ICLR 2019) for ℓ∞, ℓ1 (MILP) and ℓ2
(MIQP); ``compare`` puts attacks' distances next to the exact ones. See docs/exact.md.
"""

from edgewise.exact.certify import NORMS, STATUSES, ExactResult, minimal
from edgewise.exact.compare import compare, plot_comparison

__all__ = ["NORMS", "STATUSES", "ExactResult", "compare", "minimal", "plot_comparison"]
