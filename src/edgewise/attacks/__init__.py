"""Attacks: pure functions ``attack(model, inputs, labels, *, ...) -> adversarial inputs`` (see ``base``).

``ATTACKS`` maps the names used by the command line and the benchmark to the functions.
"""

from collections.abc import Callable

import torch

from edgewise.attacks.alma import alma
from edgewise.attacks.cw import cw
from edgewise.attacks.ddn import ddn
from edgewise.attacks.fmn import fmn
from edgewise.attacks.pgd import pgd

ATTACKS: dict[str, Callable[..., torch.Tensor]] = {
    "alma": alma,
    "cw": cw,
    "ddn": ddn,
    "fmn": fmn,
    "pgd": pgd,
}

__all__ = ["ATTACKS", "alma", "cw", "ddn", "fmn", "pgd"]
