"""PGD: inside the ε-ball and the box, succeeds on the linear oracle exactly when ε exceeds the closed-form optimum."""

from __future__ import annotations

import copy

import pytest
import torch

from edgewise.attacks.pgd import ascent_loss, pgd, pgd_step, random_start
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


def test_returns_the_adversarial_iterate_of_highest_loss(linear_oracle, bend) -> None:
    # The bent margin peaks at f = 1 and falls beyond: with ε five times the distance to the boundary the ℓ2
    # iterates overshoot and swing around the peak, and the point after the final step is not the best; the result
    # is the evaluated iterate of highest loss among the adversarial ones (docstring).
    o = linear_oracle
    model = bend(o.model)
    seen: list[torch.Tensor] = []

    def recording(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.detach().clone())
        return model(x)

    found = pgd(recording, o.inputs, o.labels, norm="l2", eps=5 * o.l2, steps=8, step_size=0.5)
    with torch.no_grad():
        iterates = torch.stack(seen)
        logits = torch.stack([model(x) for x in seen])
    losses = torch.stack([torch.nn.functional.cross_entropy(z, o.labels, reduction="none") for z in logits])
    losses = losses.masked_fill(logits.argmax(2) == o.labels, -torch.inf)
    best = losses.argmax(0)
    assert bool((losses.amax(0) > -torch.inf).all())
    torch.testing.assert_close(found, iterates[best, torch.arange(len(o.inputs))], rtol=0, atol=0)


def test_eps_tensor_must_be_positive(linear_oracle) -> None:
    o = linear_oracle
    eps = torch.full((len(o.inputs),), 0.1)
    eps[3] = 0.0
    with pytest.raises(ValueError, match=r"^eps must be finite and > 0, got min 0 "):
        pgd(o.model, o.inputs, o.labels, eps=eps)


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_random_start_is_uniform_in_the_ball(norm: str) -> None:
    # ℓ∞ (Madry et al.): δ uniform in [-ε, ε]^d, so no mass on the faces and a mean near 0; ℓ2 / ℓ1: a uniform
    # direction of length U·ε, U uniform in [0, 1] (the box is not reached from x = 0.5 with ε = 0.05).
    inputs, eps = torch.full((200, 1, 8, 8), 0.5, dtype=torch.float64), 0.05
    delta = random_start(inputs, norm=norm, eps=eps, generator=torch.Generator().manual_seed(0)).flatten(1)
    if norm == "linf":
        scaled = delta / eps
        assert float(scaled.abs().max()) <= 1 and float((scaled.abs() == 1).double().mean()) < 0.01
        assert abs(float(scaled.mean())) < 0.02 and 0.3 < float(scaled.abs().mean()) < 0.7
        return
    ratio = delta.norm(p=2 if norm == "l2" else 1, dim=1) / eps
    assert float(ratio.max()) <= 1 + 1e-9
    assert 0.4 < float(ratio.mean()) < 0.6 and 0.05 < float((ratio > 0.9).double().mean()) < 0.2


def test_random_start_follows_the_inputs_device(linear_oracle) -> None:
    # With "meta" as the default device, a tensor made without device= meets the CPU inputs and fails, as it
    # would on a GPU.
    o = linear_oracle
    for norm in NORMS:
        expected = pgd(o.model, o.inputs, o.labels, norm=norm, steps=1, random_init=True,
                       generator=torch.Generator().manual_seed(0))
        with torch.device("meta"):
            found = pgd(o.model, o.inputs, o.labels, norm=norm, steps=1, random_init=True,
                        generator=torch.Generator().manual_seed(0))
        assert found.device == o.inputs.device and torch.equal(found, expected), norm
