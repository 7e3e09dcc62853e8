"""Attacks: pure functions ``attack(model, inputs, labels, *, ...) -> adversarial inputs`` (see ``base``)."""

from edgewise.attacks.ddn import ddn

__all__ = ["ddn"]
