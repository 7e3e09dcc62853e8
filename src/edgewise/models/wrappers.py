"""Model wrappers: input normalization inside the model, channel repetition, forward/backward counting, and
AttackBench's per-sample query budget."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from edgewise.distances import get as get_distance
from edgewise.losses import is_adversarial, logit_margin


def leaves(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The layers of an nn.Sequential in order, nested ones flattened, with their dotted names (a module that is
    not a Sequential is its own one layer, named "model" at the top)."""
    if isinstance(module, nn.Sequential):
        return [leaf for name, child in module.named_children() for leaf in leaves(child, f"{prefix}{name}.")]
    return [(prefix.rstrip(".") or "model", module)]


class Normalize(nn.Module):
    """``(inputs - mean) / std`` per channel, so that models take inputs in [0, 1] (DESIGN.md)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have the same length, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return (inputs - self.mean) / self.std


class RepeatChannels(nn.Module):
    """Repeat a 1-channel image to ``channels`` channels (a gray model seen as a color model)."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.expand(-1, self.channels, -1, -1)


class _BackwardCounter(Protocol):
    def count_backward(self, grad: torch.Tensor) -> torch.Tensor: ...


class _CountBackward(torch.autograd.Function):
    """Identity whose backward hands the gradient to a counter (which counts it and may gate it)."""

    @staticmethod
    def forward(ctx: Any, inputs: torch.Tensor, counter: _BackwardCounter) -> torch.Tensor:
        ctx.counter = counter
        return inputs.view_as(inputs)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.counter.count_backward(grad), None


def half_gaps(inputs: torch.Tensor, *, p: float) -> torch.Tensor:
    """Per sample, half the ℓp distance to the nearest other sample of ``inputs`` (inf for a single one)."""
    flat = inputs.detach().flatten(1).double()
    return torch.cdist(flat, flat, p=p).fill_diagonal_(math.inf).min(1).values / 2


def nearest_samples(queries: torch.Tensor, inputs: torch.Tensor, *, p: float, radius: torch.Tensor) -> torch.Tensor:
    """Index of the sample of ``inputs`` nearest in ℓp to each query row (``radius``: :func:`half_gaps`). A
    query nearer to sample i than half the gap to i's nearest other sample is nearest to i (triangle
    inequality), so for a query batch of the inputs' size the full search is needed only for the other rows."""
    flat = queries.detach().flatten(1).double()
    index = torch.arange(len(queries), device=queries.device)
    if len(queries) == len(inputs):
        own = torch.linalg.vector_norm(flat - inputs.flatten(1).double(), ord=p, dim=1)
        near = own < radius
        if bool(near.all()):
            return index
    else:
        near = torch.zeros(len(queries), dtype=torch.bool, device=queries.device)
    far = ~near
    nearest = torch.cdist(flat[far], inputs.flatten(1).double(), p=p).argmin(1)
    return index.masked_scatter(far, nearest)


class CountingModel(nn.Module):
    """Wrap a model and count the samples that go through its forward and backward passes.

    Forward samples are counted in :meth:`forward`; backward samples by an identity autograd node put in front
    of the model in each forward that requires gradients (one per graph, so a gradient through that forward is
    counted once), so nothing is registered on the wrapped model and nothing is left behind.
    ``forwards`` and ``backwards`` are plain integers (number of samples, not of calls).

    With ``labels`` (the batch's true classes, or targets with ``targeted``), every full-batch forward also
    records per sample the index (1-based) of the first forward whose input was in [0, 1] and adversarial:
    ``first_adversarial`` (0 = never; empty without ``labels``). It also keeps, per sample, whether any forward
    returned NaN/inf (``non_finite``) and the logit margin of the first forward and the lowest one seen
    (``first_margin``, ``lowest_margin``): the margin decreased iff ``lowest_margin < first_margin`` (the
    failure indicators of :mod:`edgewise.eval`). With ``inputs`` (the batch itself) a forward of another size
    (an attack that queries the samples still open, as ``auto`` does) is recorded too, each row for the sample
    nearest to it in ℓ2 (:func:`nearest_samples`); without, such a forward is not recorded.
    """

    def __init__(self, model: nn.Module, *, labels: torch.Tensor | None = None, targeted: bool = False,
                 inputs: torch.Tensor | None = None) -> None:
        super().__init__()
        self.training = False  # no mode of its own: attacks check the wrapped model's modules for train mode
        self.model = model
        self.labels = labels
        self.targeted = targeted
        self.inputs = None if inputs is None else inputs.detach()
        self._radius: torch.Tensor | None = None  # half_gaps of the inputs, at the first forward that needs them
        self.forwards = 0
        self.backwards = 0
        self.calls = 0
        empty = torch.zeros(0, dtype=torch.long)
        self.first_adversarial = empty if labels is None else torch.zeros_like(labels)
        self.non_finite = torch.zeros(0 if labels is None else len(labels), dtype=torch.bool,
                                      device=None if labels is None else labels.device)
        self.first_margin = torch.full(self.non_finite.shape, float("nan"), device=self.non_finite.device)
        self.lowest_margin = torch.full(self.non_finite.shape, float("inf"), device=self.non_finite.device)

    def _record(self, inputs: torch.Tensor, logits: torch.Tensor) -> None:
        if self.labels is None:
            return
        if logits.shape[0] == self.labels.shape[0]:
            index = torch.arange(len(self.labels), device=self.labels.device)
        elif self.inputs is not None:
            if self._radius is None:
                self._radius = half_gaps(self.inputs, p=2.0)
            index = nearest_samples(inputs, self.inputs, p=2.0, radius=self._radius)
        else:
            return
        labels = self.labels[index]
        detached = logits.detach()
        predicted = detached.argmax(1)
        adversarial = predicted == labels if self.targeted else predicted != labels
        inside = ((inputs >= 0) & (inputs <= 1)).flatten(1).all(1)
        hit = torch.zeros_like(self.non_finite).index_fill(0, index[adversarial & inside], True)
        self.first_adversarial = torch.where(hit & (self.first_adversarial == 0), self.calls,
                                             self.first_adversarial)
        self.non_finite = self.non_finite.index_fill(0, index[~torch.isfinite(detached).all(1)], True)
        margin = logit_margin(detached, labels, targeted=self.targeted).float()
        lowest = torch.full_like(self.lowest_margin, math.inf).scatter_reduce(0, index, margin, "amin")
        seen = torch.zeros_like(self.non_finite).index_fill(0, index, True)
        self.first_margin = torch.where(self.first_margin.isnan() & seen, lowest, self.first_margin)
        self.lowest_margin = torch.fmin(self.lowest_margin, lowest)

    def count_backward(self, grad: torch.Tensor) -> torch.Tensor:
        self.backwards += grad.shape[0]
        return grad

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        batch = inputs.shape[0]
        self.forwards += batch
        self.calls += 1
        if inputs.requires_grad:
            inputs = _CountBackward.apply(inputs, self)
        logits: torch.Tensor = self.model(inputs)
        self._record(inputs.detach(), logits)
        return logits


# The ℓp norm torch.cdist computes for a benchmark distance, to tell which original sample a query perturbs.
_MATCHING_P = {"l0": 0.0, "l1": 1.0, "l2": 2.0, "linf": math.inf}


class _Gate:
    """The backward of one forward of a :class:`BudgetModel`: counts a backward pass for each row whose sample
    still has budget and zeroes the gradient of the others (the budget is read when the backward runs)."""

    def __init__(self, budget: BudgetModel, index: torch.Tensor) -> None:
        self.budget = budget
        self.index = index

    def count_backward(self, grad: torch.Tensor) -> torch.Tensor:
        allowed = self.budget.charge(self.index)
        return grad * allowed.view(-1, *[1] * (grad.dim() - 1)).to(grad.dtype)


class BudgetSpentError(Exception):
    """Raised by a :class:`BudgetModel` built with ``stop=True`` when it is queried after every sample has spent
    its budget: nothing the attack does from there can change ``best``."""


class BudgetModel(nn.Module):
    """AttackBench's query budget (Cinà et al., AAAI 2025, sec. 3) for one batch of ``inputs``.

    Each query row is matched to the original sample nearest to it in the ``distance``'s ℓp norm (an attack may
    query subsets, copies or reorderings of the batch). A sample has ``budget`` passes: every forward row and
    every backward row counts one. Past its budget it is not answered: its row gets constant logits that say
    "not adversarial" (``num_classes`` at the true class, or ``-num_classes`` at the target when ``targeted``,
    as attackbenchlib 2.0.2's BenchModel) with a zero gradient, and a backward through it is zeroed. Inputs are
    clamped to [0, 1] first (BenchModel's ``enforce_box``), with the gradient passed through unchanged.

    Every answered forward records, per sample, the smallest-``distance`` successful query seen (finite logits,
    adversarial prediction): ``best`` (the original input where none) and ``best_distance`` (0 for samples
    misclassified before the attack, inf where none). ``spent`` counts the passes per sample; it never exceeds
    ``budget``.

    With ``stop``, a forward after every sample has spent its budget (or is at distance 0, a clean error: nothing
    can improve it) raises :class:`BudgetSpentError` instead of answering "not adversarial" (an attack with more
    steps than the budget, such as C&W's 9 searches, would otherwise keep computing on constant logits).
    """

    def __init__(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, budget: int,
                 distance: str, targeted: bool = False, stop: bool = False) -> None:
        super().__init__()
        self.training = False  # no mode of its own: attacks check the wrapped model's modules for train mode
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"budget must be a positive int (forward + backward passes per sample), got {budget!r}")
        self.model = model
        self.budget = budget
        self.targeted = targeted
        self.stop = stop
        self.inputs = inputs.detach()
        self.labels = labels
        self.measure = get_distance(distance)
        self.p = _MATCHING_P.get(distance, 2.0)
        with torch.no_grad():
            clean = model(self.inputs)
        self.num_classes = clean.shape[1]
        self.spent = torch.zeros(len(labels), dtype=torch.long, device=labels.device)
        self.best = self.inputs.clone()
        already = is_adversarial(clean, labels, targeted=targeted)
        self.best_distance = torch.where(already, 0.0, torch.inf).to(self.inputs.dtype)
        self.radius = half_gaps(self.inputs, p=self.p)

    def match(self, queries: torch.Tensor) -> torch.Tensor:
        """Index of the original sample nearest to each query row."""
        return nearest_samples(queries, self.inputs, p=self.p, radius=self.radius)

    def allowed(self, index: torch.Tensor) -> torch.Tensor:
        """Rows whose sample can still pay one pass; a sample queried k times in one call pays in row order."""
        earlier = (index.unsqueeze(0) == index.unsqueeze(1)).tril(-1).sum(1)
        return self.spent[index] + earlier < self.budget

    def charge(self, index: torch.Tensor) -> torch.Tensor:
        """Count one pass for each row that can pay; returns those rows."""
        allowed = self.allowed(index)
        self.spent.index_add_(0, index, allowed.long())
        return allowed

    def _not_adversarial(self, index: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        chosen = self.labels[index]
        logits = nn.functional.one_hot(chosen, self.num_classes).to(inputs.dtype) * self.num_classes
        # Tied to the inputs with a zero weight: the graph stays intact and its gradient is zero.
        return (-logits if self.targeted else logits) + inputs.flatten(1)[:, :1] * 0

    def _record(self, inputs: torch.Tensor, logits: torch.Tensor, index: torch.Tensor,
                answered: torch.Tensor) -> None:
        # A row with NaN/inf logits has no prediction (its argmax is arbitrary): it is no adversarial, as in verify.
        detached = logits.detach()
        success = answered & torch.isfinite(detached).all(1) & is_adversarial(detached, self.labels[index],
                                                                               targeted=self.targeted)
        if not bool(success.any()):
            return
        rows, samples = success.nonzero().squeeze(1), index[success]
        found = inputs.detach()[rows]
        distance = self.measure(self.inputs[samples])(found).to(self.best_distance.dtype)
        lowest = torch.full_like(self.best_distance, math.inf).scatter_reduce(0, samples, distance, "amin")
        better = (distance == lowest[samples]) & (distance < self.best_distance[samples])
        self.best[samples[better]] = found[better]
        self.best_distance = torch.fmin(self.best_distance, lowest)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # The value is clamped, the gradient passes unchanged: torch.clamp's gradient is 0 at exactly 0 and 1, so
        # clamping alone would freeze every pixel at the box's faces for an attack starting at the clean input.
        # A sample at distance 0 (misclassified before the attack) is finished too: nothing can improve it.
        if self.stop and bool(((self.spent >= self.budget) | (self.best_distance == 0)).all()):
            raise BudgetSpentError(f"every sample has spent its budget of {self.budget} passes or is at distance 0")
        inputs = inputs + (inputs.clamp(0, 1) - inputs).detach()
        index = self.match(inputs)
        answered = self.charge(index)
        logits = self._not_adversarial(index, inputs)
        if bool(answered.any()):
            rows = answered.nonzero().squeeze(1)
            queried = inputs[rows]
            if queried.requires_grad:
                queried = _CountBackward.apply(queried, _Gate(self, index[rows]))
            logits = logits.index_put((rows,), self.model(queried).to(logits.dtype))
        self._record(inputs, logits, index, answered)
        return logits


def _identity_backward(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
    inputs = args[0]
    # The forward value is the module's output exactly (a − a is 0 in floating point); the gradient is the identity.
    return output.detach() + (inputs - inputs.detach())


@contextlib.contextmanager
def straight_through(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Inside the block, each of ``modules`` (whose output has its input's shape) keeps its forward value and
    passes its output's gradient to its input unchanged: the straight-through estimator, the identity case of
    BPDA (Athalye, Carlini & Wagner, ICML 2018, sec. 4.1), for a module whose own gradient is zero (an input
    quantization). The hooks are removed on leaving the block."""
    handles = [module.register_forward_hook(_identity_backward) for module in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
