"""Min-max attacks (Wang et al., NeurIPS 2021): APGDA over ensembles, universal perturbations, transformations.

``strategy="minmax"`` (default) learns the domain weights w on the simplex; ``strategy="average"`` keeps w = 1/K
(ensemble PGD, averaged universal perturbation, EOT). Every function returns a ``MinMaxResult``.
"""

from edgewise.attacks.minmax.apgda import DEFAULTS, MinMaxResult, apgda, attack_loss
from edgewise.attacks.minmax.ensemble import ensemble_attack
from edgewise.attacks.minmax.metrics import asr_all, asr_avg, asr_gp, lift, plot_group_weights, plot_weights
from edgewise.attacks.minmax.transforms import TRANSFORM_DEFAULTS, TRANSFORMS, apply_transform, transform_attack
from edgewise.attacks.minmax.universal import universal_attack

__all__ = [
    "DEFAULTS", "TRANSFORMS", "TRANSFORM_DEFAULTS", "MinMaxResult", "apgda", "apply_transform", "asr_all",
    "asr_avg", "asr_gp", "attack_loss", "ensemble_attack", "lift", "plot_group_weights", "plot_weights",
    "transform_attack", "universal_attack",
]
