"""Attacks: pure functions ``attack(model, inputs, labels, *, ...) -> adversarial inputs`` (see ``base``).

``ATTACKS`` maps the names used by the command line and the benchmark to the functions.
"""

from collections.abc import Callable

import torch

from edgewise.attacks.alma import alma
from edgewise.attacks.ddn import ddn
from edgewise.attacks.fmn import fmn

ATTACKS: dict[str, Callable[..., torch.Tensor]] = {
    "alma": alma,
    "ddn": ddn,
    "fmn": fmn,
}

__all__ = ["ATTACKS", "alma", "ddn", "fmn"]
