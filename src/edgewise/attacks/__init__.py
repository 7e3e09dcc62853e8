"""Attacks: pure functions ``attack(model, inputs, labels, *, ...) -> adversarial inputs`` (see ``base``).

``ATTACKS`` maps the names used by the command line and the benchmark to the functions.
"""

from collections.abc import Callable

import torch

from edgewise.attacks.ddn import ddn

ATTACKS: dict[str, Callable[..., torch.Tensor]] = {
    "ddn": ddn,
}

__all__ = ["ATTACKS", "ddn"]
