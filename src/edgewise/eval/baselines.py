"""Adapters for the minimal attacks of other libraries, as callables ``(model, inputs, labels) -> adversarial``.

They run inside :func:`edgewise.eval.run_attack` like edgewise's own attacks, so every example they return is
re-verified (finite, in [0, 1], prediction recomputed) and measured with edgewise's distances and counters.
Install them with ``pip install edgewise[baselines]`` (adv-lib: see docs/install.md, it needs ``--no-deps``); a library
that is not installed makes :func:`load_baseline` raise :class:`MissingLibraryError`, whose message is one line.

Budgets follow the ALMA paper (sec. 4, "Attacks"): attacks with a binary search over the penalty constant (C&W,
EAD) get 9 × ``steps`` iterations (9 searches of ``steps`` steps), the others ``steps`` iterations.
Each adapter shields the model from the library: ``train()``/``eval()`` calls do nothing (torchattacks switches
the mode of the model it is given); the global RNG (torchattacks' FAB reseeds it) and the parameters' ``.grad``
(foolbox, through eagerpy, calls ``loss.backward()``) are restored afterwards.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from edgewise.attacks.alma import INIT_DISTANCE, default_alpha
from edgewise.eval.run import Attack

SEARCHES = 9
"""Binary-search steps of C&W and EAD (ALMA paper sec. 4: budgets 9 × 100 and 9 × 1000)."""
APGD_SEARCHES = 20
"""Search steps over ε of attackbenchlib 2.0.2's minimal APGD (its ``attacks.minimal_search_steps``)."""


class MissingLibraryError(ImportError):
    """A baseline's library is not installed; the message says which and how to install it."""


class _Shielded(nn.Module):
    """The model as a library sees it: always in eval mode, and ``train()``/``eval()`` leave it untouched."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.training = False

    def train(self, mode: bool = True) -> _Shielded:
        return self

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs)


@dataclass(frozen=True)
class Baseline:
    """One attack of another library: which module it needs, what it minimizes, and how to build it."""

    library: str
    version: str
    distance: str
    build: Callable[[Any, int], Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]]
    rounds: int = 1
    """Rounds of ``steps`` iterations it runs: its search steps (C&W, EAD, AttackBench's APGD), else 1."""
    min_steps: int = 1
    """The fewest ``steps`` it runs with (attackbenchlib 2.0.2's ℓ1 APGD gives 30%, 30% and the rest of them,
    rounded up, to three radii: with 1 step the last gets −1 and torch fails deep inside)."""


def _adv_lib(name: str, **fixed: Any) -> Callable[[Any, int], Callable[..., torch.Tensor]]:
    def build(module: Any, steps: int) -> Callable[..., torch.Tensor]:
        function = getattr(module.attacks, name)
        options = {"steps": steps, **fixed}
        if name == "alma":  # the hyper-parameters edgewise's alma uses at this budget and distance
            options = {"num_steps": steps, "α": default_alpha(steps),
                       "init_lr_distance": INIT_DISTANCE[fixed["distance"]], **fixed}
        return lambda model, inputs, labels: function(model, inputs, labels, **options)
    return build


def _foolbox(name: str, *, rounds: int = 1) -> Callable[[Any, int], Callable[..., torch.Tensor]]:
    def build(module: Any, steps: int) -> Callable[..., torch.Tensor]:
        budget = {"binary_search_steps": rounds, "steps": steps} if rounds > 1 else {"steps": steps}
        attack = getattr(module.attacks, name)(**budget)

        def run(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                wrapped = module.PyTorchModel(model, bounds=(0, 1), device=inputs.device)
                _, clipped, _ = attack(wrapped, inputs, labels, epsilons=None)
            return clipped
        return run
    return build


def _torchattacks(name: str, **fixed: Any) -> Callable[[Any, int], Callable[..., torch.Tensor]]:
    def build(module: Any, steps: int) -> Callable[..., torch.Tensor]:
        def run(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            attack = getattr(module, name)(model, steps=steps, **fixed)
            return attack(inputs, labels)
        return run
    return build


def _attackbench(config: str, **overrides: Any) -> Callable[[Any, int], Callable[..., torch.Tensor]]:
    """An original attack of attackbenchlib, configured as its ``configs.original_CONFIG()`` ships it (the
    paper's settings) with ``num_steps`` = steps and ``overrides``, called with its ``threat_model`` keyword
    (its own ``run_attack`` passes ``norm=``, which these functions reject)."""
    def build(module: Any, steps: int) -> Callable[..., torch.Tensor]:
        configs = importlib.import_module("attackbench.attacks.original.configs")
        settings = {**getattr(configs, f"original_{config}")(), "num_steps": steps, **overrides}
        getter = getattr(configs, f"get_original_{settings.pop('name')}")
        settings.pop("source")
        if "threat_model" not in inspect.signature(getter).parameters:  # an ℓ2-only attack (SuperDeepFool)
            settings.pop("threat_model")
        attack = getter(**settings)
        return lambda model, inputs, labels: attack(model=model, inputs=inputs, labels=labels)
    return build


def _attackbench_entry(distance: str, config: str, *, rounds: int = 1, min_steps: int = 1,
                       **overrides: Any) -> Baseline:
    return Baseline("attackbench", "2.0.2", distance, _attackbench(config, **overrides), rounds, min_steps)


def _foolbox_entry(distance: str, name: str, *, rounds: int = 1) -> Baseline:
    return Baseline("foolbox", "3.3.4", distance, _foolbox(name, rounds=rounds), rounds)


BASELINES: dict[str, Baseline] = {
    "adv-lib:alma-l1": Baseline("adv_lib", "0.2.8", "l1", _adv_lib("alma", distance="l1")),
    "adv-lib:alma-l2": Baseline("adv_lib", "0.2.8", "l2", _adv_lib("alma", distance="l2")),
    "adv-lib:ddn": Baseline("adv_lib", "0.2.8", "l2", _adv_lib("ddn")),
    "adv-lib:fmn-l1": Baseline("adv_lib", "0.2.8", "l1", _adv_lib("fmn", norm=1)),
    "adv-lib:fmn-l2": Baseline("adv_lib", "0.2.8", "l2", _adv_lib("fmn", norm=2)),
    "adv-lib:fmn-linf": Baseline("adv_lib", "0.2.8", "linf", _adv_lib("fmn", norm=float("inf"))),
    "foolbox:ddn": _foolbox_entry("l2", "DDNAttack"),
    "foolbox:cw-l2": _foolbox_entry("l2", "L2CarliniWagnerAttack", rounds=SEARCHES),
    "foolbox:fmn-l1": _foolbox_entry("l1", "L1FMNAttack"),
    "foolbox:fmn-l2": _foolbox_entry("l2", "L2FMNAttack"),
    "foolbox:fmn-linf": _foolbox_entry("linf", "LInfFMNAttack"),
    "foolbox:ead": _foolbox_entry("l1", "EADAttack", rounds=SEARCHES),
    "torchattacks:cw-l2": Baseline("torchattacks", "3.5.1", "l2", _torchattacks("CW")),
    "torchattacks:fab-l2": Baseline("torchattacks", "3.5.1", "l2", _torchattacks("FAB", norm="L2", eps=float("inf"))),
    "torchattacks:deepfool": Baseline("torchattacks", "3.5.1", "l2", _torchattacks("DeepFool")),
    "attackbench:fmn-l0": _attackbench_entry("l0", "fmn", threat_model="l0"),
    "attackbench:fmn-l1": _attackbench_entry("l1", "fmn", threat_model="l1"),
    "attackbench:fmn-l2": _attackbench_entry("l2", "fmn"),
    "attackbench:fmn-linf": _attackbench_entry("linf", "fmn_linf"),
    "attackbench:superdeepfool": _attackbench_entry("l2", "superdeepfool"),
    "attackbench:fab-l1": _attackbench_entry("l1", "fab", threat_model="l1"),
    "attackbench:fab-l2": _attackbench_entry("l2", "fab", threat_model="l2"),
    "attackbench:fab-linf": _attackbench_entry("linf", "fab"),
    "attackbench:apgd-l1": _attackbench_entry("l1", "apgd_minimal_l1", rounds=APGD_SEARCHES, min_steps=2),
    "attackbench:apgd-l2": _attackbench_entry("l2", "apgd_minimal", rounds=APGD_SEARCHES, threat_model="l2"),
    "attackbench:apgd-linf": _attackbench_entry("linf", "apgd_minimal", rounds=APGD_SEARCHES),
    "attackbench:sigma-zero": _attackbench_entry("l0", "sigma_zero"),
    "attackbench:trust-region-l2": _attackbench_entry("l2", "tr", threat_model="l2"),
    "attackbench:trust-region-linf": _attackbench_entry("linf", "tr"),
}
"""Name (``library:attack``) -> adapter. torchattacks' CW has a fixed constant c (no binary search); its FAB
is a budget attack, made minimal with eps = inf (its ℓ1 variant is left out: it raises UnboundLocalError in
torchattacks 3.5.1), run untargeted like every adapter, so its ``n_classes`` (read only by its multi-targeted
version) is not passed. Run as their libraries ship them, bugs included: foolbox 3.3.4's ``L2FMNAttack.project``
scales by ``min(1, norms / norms)`` = 1, ignoring ε, so its ℓ2 FMN never shrinks the first adversarial it finds;
torchattacks' DeepFool can return a point short of the boundary (its overshoot is lost to the clipping).
attackbenchlib 2.0.2's originals run with the settings of its ``configs`` (AttackBench's paper): its APGD is the
minimal-distance search around APGD (20 search steps of ``steps``
iterations each), its FAB is untargeted with ε = inf, its trust region is the non-adaptive one."""

_DISTRIBUTIONS = {"adv_lib": "adv-lib", "foolbox": "foolbox", "torchattacks": "torchattacks",
                  "attackbench": "attackbenchlib"}
"""The distribution (pip) name of each library's module."""

_PIP = {"adv_lib": "adv-lib==0.2.8 (pip install --no-deps; see docs/install.md)", "foolbox": "foolbox==3.3.4",
        "torchattacks": "torchattacks==3.5.1",
        "attackbench": "attackbenchlib==2.0.2 (pip install --no-deps, then wandb, adversarial-robustness-toolbox "
                       "and cleverhans==4.0.0; see docs/benchmark.md)"}


def _import(library: str) -> Any:
    """The library's module, with its attacks imported (adv-lib's ``attacks`` package is not imported eagerly)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if library == "adv_lib":
                importlib.import_module("adv_lib.attacks")
            if library == "attackbench":  # it imports wandb at import time: never log in, never reach the network
                os.environ.setdefault("WANDB_MODE", "disabled")
            return importlib.import_module(library)
    except ImportError as error:
        raise MissingLibraryError(f"{library} is not installed ({error}); install {_PIP[library]}") from error


def installed_version(library: str) -> str:
    """The version of ``library``'s installed distribution ("unknown" where it has no metadata)."""
    try:
        return importlib.metadata.version(_DISTRIBUTIONS[library])
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def run_baseline(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, baseline: str, steps: int,
                 version: str) -> torch.Tensor:
    """Run the baseline ``baseline`` with a budget of ``steps`` iterations, shielded (:class:`_Shielded`, the
    global RNG and the parameters' ``.grad`` restored, even when the attack stops by an exception such as the
    benchmark's ``BudgetSpentError``). ``version``: of the library, which must be the installed one."""
    entry = BASELINES[baseline]
    module = _import(entry.library)
    installed = installed_version(entry.library)
    if version != installed:
        raise ValueError(f"version must be the installed {entry.library} version {installed!r}, got {version!r}")
    attack = entry.build(module, steps)
    grads = [(p, p.grad) for p in model.parameters()]
    try:
        with torch.random.fork_rng(devices=[]):
            adversarial = attack(_Shielded(model), inputs, labels)
    finally:
        for parameter, grad in grads:  # eagerpy (foolbox) calls loss.backward(): undo what it accumulated
            parameter.grad = grad
    return adversarial.detach().to(dtype=inputs.dtype, device=inputs.device)


def load_baseline(name: str, *, steps: int) -> Attack:
    """The baseline ``name`` with a budget of ``steps`` iterations, as an edgewise attack callable.

    A :func:`functools.partial` of :func:`run_baseline` bound to the name, ``steps`` and the library's installed
    version, so that provenance tells apart the results of another budget or version of the library (a resumed
    run of another ``steps`` is refused, not handed back). Raises ``ValueError`` for an unknown name and
    :class:`MissingLibraryError` when its library is not installed.
    """
    if name not in BASELINES:
        raise ValueError(f"baseline must be one of {sorted(BASELINES)}, got {name!r}")
    library, fewest = BASELINES[name].library, BASELINES[name].min_steps
    if steps < fewest:
        raise ValueError(f"baseline {name!r} needs steps >= {fewest} (per round of its search), got {steps}")
    _import(library)  # fails now, in one line, if the library is missing
    bound = partial(run_baseline, baseline=name, steps=steps, version=installed_version(library))
    bound.__name__ = name  # type: ignore[attr-defined]
    return bound
