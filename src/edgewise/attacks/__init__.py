"""Attacks: pure functions ``attack(model, inputs, labels, *, ...) -> adversarial inputs`` (see ``base``).

``ATTACKS`` maps the names used by the command line and the benchmark to the functions, each taking ``steps``
(iterations of one forward and one backward): ``"auto"`` is ``auto.auto_steps``, ``auto`` with a budget of
2 × ``steps`` passes; ``"fab"`` is ``fab.fab_steps``, FAB with the same budget of 2 × ``steps`` passes (its
iterations cost K + 1 passes each), ``"fab_t"`` the same for FAB-T over 9 target classes (AutoAttack's).
"""

import functools
import inspect
from collections.abc import Callable

import torch

from edgewise.attacks.alma import alma
from edgewise.attacks.apgd import apgd
from edgewise.attacks.auto import auto, auto_steps
from edgewise.attacks.cw import cw
from edgewise.attacks.ddn import ddn
from edgewise.attacks.fab import fab, fab_steps
from edgewise.attacks.fmn import fmn
from edgewise.attacks.minimal import minimal
from edgewise.attacks.pgd import pgd
from edgewise.attacks.sigma_zero import sigma_zero

ATTACKS: dict[str, Callable[..., torch.Tensor]] = {
    "alma": alma,
    "apgd": apgd,
    "auto": auto_steps,
    "cw": cw,
    "ddn": ddn,
    "fab": fab_steps,
    "fab_t": functools.partial(fab_steps, target_classes=9),  # FAB-T over the 9 most likely other classes
    "fmn": fmn,
    "pgd": pgd,
    "sigma_zero": sigma_zero,
    # The fixed-ε attacks in minimal-distance form (a per-sample search over ε, attacks.minimal).
    "apgd_minimal": functools.partial(minimal, attack=apgd),
    "pgd_minimal": functools.partial(minimal, attack=pgd),
}



def distance_keyword(attack: Callable[..., torch.Tensor]) -> str | None:
    """The keyword that chooses what ``attack`` measures: "distance" (ALMA, C&W: any registry distance), "norm"
    (FMN, PGD: an ℓp norm) or None (DDN: ℓ2 only)."""
    parameters = inspect.signature(attack).parameters
    return next((k for k in ("distance", "norm") if k in parameters), None)


__all__ = ["ATTACKS", "alma", "apgd", "auto", "cw", "ddn", "distance_keyword", "fab", "fmn", "minimal", "pgd",
           "sigma_zero"]
