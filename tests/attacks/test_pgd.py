"""PGD: inside the ε-ball and the box, succeeds on the linear oracle exactly when ε exceeds the closed-form optimum."""

from __future__ import annotations

import copy

import pytest
import torch

from edgewise.attacks.pgd import ascent_loss, pgd, pgd_step
from edgewise.data import sample
from edgewise.distances import lp
from edgewise.models import CountingModel, load_model

NORMS = ("linf", "l2", "l1")


@pytest.fixture(scope="module")
def smallcnn() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    inputs, labels = sample()
    return load_model("smallcnn-fmnist"), inputs[:8], labels[:8]


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("random_init", [False, True])
def test_linear_oracle_success_iff_eps_above_the_optimum(linear_oracle, norm: str, random_init: bool) -> None:
    o = linear_oracle
    optimum = getattr(o, norm)
    for factor, should_succeed in ((1.3, True), (0.9, False)):
        eps = factor * optimum
        adv = pgd(o.model, o.inputs, o.labels, norm=norm, eps=eps, steps=50, random_init=random_init,
                  generator=torch.Generator().manual_seed(0))
        assert bool((getattr(lp, norm)(o.inputs, adv) <= eps * (1 + 1e-4)).all())
        assert adv.min() >= 0 and adv.max() <= 1
        fooled = o.model(adv).argmax(1) != o.labels
        assert bool((fooled == should_succeed).all()), (norm, factor, fooled)


def test_l0_changes_at_most_eps_pixels(smallcnn) -> None:
    model, inputs, labels = smallcnn
    adv = pgd(model, inputs[:8], labels[:8], norm="l0", eps=5, steps=5)
    assert int(lp.l0(inputs[:8], adv).max()) <= 5


def test_targeted_reaches_the_target(linear_oracle) -> None:
    o = linear_oracle
    targets = 1 - o.labels
    adv = pgd(o.model, o.inputs, targets, norm="l2", eps=1.3 * o.l2.max().item(), steps=50, targeted=True)
    assert torch.equal(o.model(adv).argmax(1), targets)


def test_budget_and_no_global_rng(smallcnn) -> None:
    model, inputs, labels = smallcnn
    counting = CountingModel(model)
    state = torch.get_rng_state()
    pgd(counting, inputs[:6], labels[:6], steps=7, random_init=True)
    assert torch.equal(torch.get_rng_state(), state)
    assert counting.forwards == 7 * 6 and counting.backwards == 7 * 6


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"norm": "l3"}, ValueError, "^norm must be one of"),
    ({"eps": -0.1}, ValueError, "^eps must be > 0"),
    ({"steps": 0}, ValueError, "^steps must be > 0"),
    ({"steps": 1.5}, TypeError, "^steps must be an int"),
    ({"loss": "hinge"}, ValueError, "^loss must be one of"),
    ({"step_size": "big"}, TypeError, "^step_size must be a number"),
])
def test_bad_options(linear_oracle, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        pgd(linear_oracle.model, linear_oracle.inputs, linear_oracle.labels, **kwargs)


def test_cw_ascent_loss_is_the_negated_margin_targeted_or_not() -> None:
    # z = (1, 3, 2), class 0: untargeted margin z₀ − max_{j≠0} z_j = −2, targeted max_{j≠0} z_j − z₀ = 2.
    logits, labels = torch.tensor([[1.0, 3.0, 2.0]]), torch.tensor([0])
    assert float(ascent_loss(logits, labels, loss="cw", targeted=False)) == 2.0
    assert float(ascent_loss(logits, labels, loss="cw", targeted=True)) == -2.0


def test_l0_step_length_is_the_step_size_not_scaled_by_eps() -> None:
    # g/‖g‖₂ = (0.6, 0.8, 0, 0); ℓ0 step α = 0.25 (not α ε = 0.5), both coordinates kept by ε = 2.
    delta, inputs = torch.zeros(1, 4), torch.full((1, 4), 0.5)
    step = pgd_step(delta, inputs, torch.tensor([[3.0, 4.0, 0.0, 0.0]]), norm="l0", eps=2.0, step_size=0.25)
    torch.testing.assert_close(step, torch.tensor([[0.15, 0.2, 0.0, 0.0]]))


def test_a_sample_never_adversarial_gets_the_last_iterate(linear_oracle) -> None:
    # ε = a tenth of each sample's ℓ2 distance to the boundary: never adversarial, so PGD returns x + δ_K (the
    # last projected ascent step, moved off x), not the clean input.
    o = linear_oracle
    eps = o.l2 / 10
    found = pgd(o.model, o.inputs, o.labels, norm="l2", eps=eps, steps=3)
    assert bool((o.model(found).argmax(1) == o.labels).all())
    torch.testing.assert_close(lp.l2(o.inputs, found), eps, rtol=1e-4, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm", NORMS)
def test_random_start_follows_the_inputs_dtype_not_the_default(linear_oracle, norm: str, dtype) -> None:
    # A draw made without dtype= follows torch's default dtype: then a seeded run on float64 inputs would start
    # elsewhere (a float32 draw) unless the default is float64. Drawn in the inputs' dtype, it does not depend on it.
    o = linear_oracle
    model, inputs = copy.deepcopy(o.model).to(dtype), o.inputs.to(dtype)

    def run() -> torch.Tensor:
        return pgd(model, inputs, o.labels, norm=norm, eps=0.3, steps=1, random_init=True,
                   generator=torch.Generator().manual_seed(0))

    expected = run()
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if dtype == torch.float32 else torch.float32)
    try:
        found = run()
    finally:
        torch.set_default_dtype(default)
    assert found.dtype == dtype and torch.equal(found, expected)
