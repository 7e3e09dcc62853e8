import os
from functools import partial

import pytest
import torch

from edgewise.attacks import ddn, fmn
from edgewise.eval import run_attack
from edgewise.eval.benchmark import budgeted
from edgewise.losses import logit_margin
from edgewise.models.architectures import Quantize
from edgewise.models.wrappers import BudgetModel, BudgetSpentError, straight_through

from ..conftest import make_linear_oracle, require  # type: ignore[import-not-found]


@pytest.fixture(scope="module")
def oracle():
    return make_linear_oracle(batch=6, seed=3)


def greedy(model, inputs, labels, *, steps: int, subsets: bool = False):
    """An attack that ignores any budget: ``steps`` gradient steps on the margin, each over the batch, its reverse
    and (``subsets``) a duplicated half, several backwards per forward included."""
    x = inputs.clone()
    for _ in range(steps):
        x.requires_grad_(True)
        queries = torch.cat([x, x.flip(0), x[::2], x[::2]]) if subsets else x
        rows = torch.cat([labels, labels.flip(0), labels[::2], labels[::2]]) if subsets else labels
        margin = logit_margin(model(queries), rows).sum()
        (grad,) = torch.autograd.grad(margin, x)
        x = (x - 0.05 * grad.sign()).clamp(0, 1).detach()
    return x


@pytest.mark.parametrize("subsets", [False, True])
def test_budget_is_never_exceeded_and_exhausted_samples_are_not_answered(oracle, subsets: bool) -> None:
    budget = 13
    wrapped = BudgetModel(oracle.model, oracle.inputs, oracle.labels, budget=budget, distance="l2")
    greedy(wrapped, oracle.inputs, oracle.labels, steps=20, subsets=subsets)  # would spend 40 (or 160) each
    assert wrapped.spent.tolist() == [budget] * len(oracle.labels)
    # Past the budget: constant "not adversarial" logits at the true class, and a zero gradient.
    x = oracle.inputs.clone().requires_grad_(True)
    logits = wrapped(x)
    assert torch.equal(logits.argmax(1), oracle.labels)
    (grad,) = torch.autograd.grad(logit_margin(logits, oracle.labels).sum(), x)
    assert not grad.any()
    assert wrapped.spent.max() == budget


def test_stop_raises_once_every_sample_is_spent_with_the_same_best(oracle) -> None:
    answered = BudgetModel(oracle.model, oracle.inputs, oracle.labels, budget=13, distance="l2")
    greedy(answered, oracle.inputs, oracle.labels, steps=20, subsets=False)
    stopped = BudgetModel(oracle.model, oracle.inputs, oracle.labels, budget=13, distance="l2", stop=True)
    with pytest.raises(BudgetSpentError, match="budget of 13"):
        greedy(stopped, oracle.inputs, oracle.labels, steps=20, subsets=False)
    assert stopped.spent.tolist() == [13] * len(oracle.labels)
    torch.testing.assert_close(stopped.best, answered.best)
    torch.testing.assert_close(stopped.best_distance, answered.best_distance)
    # A clean error is at distance 0 and finished: an attack that never queries it is still stopped.
    labels = oracle.labels.clone()
    labels[0] = 1 - labels[0]
    spared = BudgetModel(oracle.model, oracle.inputs, labels, budget=13, distance="l2", stop=True)
    with pytest.raises(BudgetSpentError):
        greedy(spared, oracle.inputs[1:], labels[1:], steps=20)
    assert spared.spent[0] == 0 and spared.spent[1:].tolist() == [13] * (len(labels) - 1)


def test_gradient_at_the_box_faces_is_the_models(oracle) -> None:
    """Pixels at exactly 0 or 1 (Fashion-MNIST's black background) keep the model's gradient under the budget:
    an attack starting at the clean input must be able to move them."""
    inputs = oracle.inputs.clone()
    inputs[:, ..., :2] = 0.0
    inputs[:, ..., -2:] = 1.0
    wrapped = BudgetModel(oracle.model, inputs, oracle.labels, budget=5, distance="l2")
    x = inputs.clone().requires_grad_(True)
    (ours,) = torch.autograd.grad(logit_margin(wrapped(x), oracle.labels).sum(), x)
    y = inputs.clone().requires_grad_(True)
    (direct,) = torch.autograd.grad(logit_margin(oracle.model(y), oracle.labels).sum(), y)
    assert direct[..., :2].abs().sum() > 0 and direct[..., -2:].abs().sum() > 0
    torch.testing.assert_close(ours, direct)


def test_backward_counts_at_backward_time_and_gates_the_gradient(oracle) -> None:
    wrapped = BudgetModel(oracle.model, oracle.inputs, oracle.labels, budget=2, distance="l2")
    x = oracle.inputs.clone().requires_grad_(True)
    first, second = wrapped(x), wrapped(x)  # two forwards: the budget of 2 is spent before any backward
    (grad,) = torch.autograd.grad(logit_margin(first, oracle.labels).sum(), x)
    assert wrapped.spent.tolist() == [2] * len(oracle.labels) and not grad.any()
    assert torch.isfinite(second).all()


def test_same_counts_and_best_distances_as_attackbench_benchmodel(oracle) -> None:
    """attackbenchlib's BenchModel (an independent implementation of the protocol) on the same attack."""
    os.environ.setdefault("WANDB_MODE", "disabled")
    require("attackbench", "pip install --no-deps attackbenchlib==2.0.2")
    import copy

    from attackbench.adv_lib_sub import _default_metrics
    from attackbench.models.benchmodel_wrapper import BenchModel

    budget = 21  # DDN does one forward + one backward per step: 10 steps and a forward of the 11th
    attack = partial(ddn, steps=30, levels=None)
    theirs = BenchModel(copy.deepcopy(oracle.model), num_max_propagations=budget).eval()  # attacks refuse train mode
    theirs.start_tracking(inputs=oracle.inputs, labels=oracle.labels, targeted=False,
                          tracking_metric=_default_metrics["l2"], tracking_threat_model="l2")
    attack(theirs, oracle.inputs, oracle.labels)
    theirs.end_tracking()
    ours = BudgetModel(oracle.model, oracle.inputs, oracle.labels, budget=budget, distance="l2")
    attack(ours, oracle.inputs, oracle.labels)
    assert torch.equal(ours.spent, theirs.num_forwards + theirs.num_backwards)
    assert torch.allclose(ours.best_distance.float(), theirs.min_dist["l2"], rtol=1e-5)
    assert torch.isfinite(ours.best_distance).all()


def test_best_point_seen_beats_the_final_iterate(oracle) -> None:
    """An attack that queries a point past the boundary, then walks further away and returns the far point."""
    def overshooting(model, inputs, labels):
        x = inputs.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(logit_margin(model(x), labels).sum(), x)
        direction = -grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        near = inputs + 1.01 * oracle.l2.view(-1, 1, 1, 1) * direction
        far = inputs + 1.5 * oracle.l2.view(-1, 1, 1, 1) * direction
        model(near), model(far)
        return far

    result = run_attack(oracle.model, oracle.inputs, oracle.labels,
                        budgeted(overshooting, budget=100, distance="l2"), progress=False, checks=False)
    final = run_attack(oracle.model, oracle.inputs, oracle.labels, overshooting, progress=False, checks=False)
    assert result.success.all()
    torch.testing.assert_close(result.distances["l2"], 1.01 * oracle.l2, rtol=1e-4, atol=1e-6)
    assert (final.distances["l2"] > 1.4 * oracle.l2).all()


def test_budgeted_attack_through_run_attack_stays_in_budget_and_gets_the_generator(oracle) -> None:
    seen = {}

    def recording(model, inputs, labels, *, generator=None):
        seen["generator"] = generator
        return fmn(model, inputs, labels, steps=50, generator=generator)

    attack = budgeted(recording, budget=40, distance="l2")
    result = run_attack(oracle.model, oracle.inputs, oracle.labels, attack, progress=False, checks=False)
    assert isinstance(seen["generator"], torch.Generator)
    assert (result.forwards + result.backwards <= 40 + 1).all()  # + run_attack's re-verification forward
    found = result.success
    assert found.any() and (result.distances["l2"][found] >= oracle.l2[found] * (1 - 1e-4)).all()
    with pytest.raises(ValueError, match="budget"):
        BudgetModel(oracle.model, oracle.inputs, oracle.labels, budget=0, distance="l2")


def test_straight_through_keeps_the_forward_and_passes_the_gradient() -> None:
    quantize, linear = Quantize(0.25), torch.nn.Linear(6, 3)
    model = torch.nn.Sequential(quantize, linear)
    inputs = torch.rand(4, 6, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    weights = torch.tensor([1.0, -2.0, 0.5])

    def value_and_gradient() -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(inputs)
        return logits.detach(), torch.autograd.grad((logits * weights).sum(), inputs)[0]

    plain, blocked = value_and_gradient()
    assert torch.equal(blocked, torch.zeros_like(blocked))  # torch.round's gradient
    with straight_through([quantize]):
        value, gradient = value_and_gradient()
    assert torch.equal(value, plain)  # the forward is the module's, bit for bit
    torch.testing.assert_close(gradient, (weights @ linear.weight).expand(4, -1))  # as if the module were x ↦ x
    assert torch.equal(value_and_gradient()[1], blocked)  # the hooks are gone
