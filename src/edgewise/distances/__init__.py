"""Distances between a reference batch and a perturbed batch, per sample, and their registry.

``edgewise.distances.get("l2")(reference)(perturbed) -> (B,)``. Argument order is always
``(reference, perturbed)``. ``names()`` lists the registry; ``register`` adds a user factory.
"""

from edgewise.distances.lp import l0, l1, l2, linf
from edgewise.distances.registry import DistanceFn, Entry, Factory, entry, get, names, pairwise, register

register("l0", pairwise(l0), description="number of changed elements", matches="numpy count_nonzero",
         differentiable=False)
register("l1", pairwise(l1), description="ℓ1 norm of the difference", matches="torch.linalg.vector_norm(ord=1)")
register("l2", pairwise(l2), description="ℓ2 norm of the difference", matches="torch.linalg.vector_norm(ord=2)")
register("linf", pairwise(linf), description="ℓ∞ norm of the difference",
         matches="torch.linalg.vector_norm(ord=inf)", differentiable=False)

__all__ = ["DistanceFn", "Entry", "Factory", "entry", "get", "l0", "l1", "l2", "linf", "names", "pairwise",
           "register"]
