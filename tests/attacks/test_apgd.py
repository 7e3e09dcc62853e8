"""APGD: the paper's checkpoints, success on the linear oracles exactly above the closed-form optimum (also with
the box active), the budget, and as strong as adv-lib's independent APGD at the same ε and steps."""

from __future__ import annotations

import pytest
import torch

from edgewise.attacks import apgd
from edgewise.attacks.apgd import checkpoints, sparse_direction
from edgewise.data import sample
from edgewise.distances import lp
from edgewise.models import CountingModel, load_model

NORMS = ("linf", "l2", "l1")
# ℓ1-APGD moves at least 2 coordinates per step by equal amounts (k = ⌊(‖δ‖₀ / 1.5)⌋ never reaches 1 from 2),
# so on the linear oracle, whose ℓ1 optimum moves one coordinate, it needs ε ≥ 2|f| / (|w₁| + |w₂|): about 1.1×
# the optimum here. adv-lib 0.2.8's APGD (the authors' algorithm) fails at 1.05× and succeeds at 1.2× as well.
ABOVE = {"linf": 1.05, "l2": 1.05, "l1": 1.2}


def test_checkpoints_of_the_paper() -> None:
    # p = 0, .22, .41, .57, .70, .80, .87, .93, .99 (sec. 3.2): w_j = ⌈100 p_j⌉.
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(1) == []


def test_sparse_direction_moves_the_top_coordinates_with_l1_length_1() -> None:
    gradient = torch.tensor([[0.1, -3.0, 2.0, 0.5, 0.0, -1.0, 0.2, 0.3, 0.4, 0.6]])
    direction = sparse_direction(gradient, torch.tensor([0.2]))
    torch.testing.assert_close(direction, torch.tensor([[0.0, -0.5, 0.5, 0, 0, 0, 0, 0, 0, 0]]))


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_linear_oracle_success_iff_eps_above_the_optimum(oracle_factory, norm: str, loss: str) -> None:
    o = oracle_factory(classes=3)
    optimum = getattr(o, norm)
    for factor, should_succeed in ((ABOVE[norm], True), (0.95, False)):
        eps = factor * optimum
        adv = apgd(o.model, o.inputs, o.labels, norm=norm, eps=eps, steps=40, loss=loss)
        fooled = o.model(adv).argmax(1) != o.labels
        assert bool((fooled == should_succeed).all()), (norm, factor, fooled)
        assert bool((getattr(lp, norm)(o.inputs, adv) <= eps * (1 + 1e-4)).all())
        assert adv.min() >= 0 and adv.max() <= 1


@pytest.mark.parametrize("norm", NORMS)
def test_box_active_oracle(box_oracle, norm: str) -> None:
    # The optimum moves only the free pixels; half the pixels are at 0 and the gradient pushes them below the box.
    o = box_oracle
    adv = apgd(o.model, o.inputs, o.labels, norm=norm, eps=1.05 * getattr(o, norm), steps=40)
    assert bool((o.model(adv).argmax(1) != o.labels).all())


@pytest.mark.parametrize("norm", NORMS)
def test_targeted_reaches_the_target(oracle_factory, norm: str) -> None:
    o = oracle_factory(classes=4)
    targets = 1 - o.labels
    for loss in ("ce", "dlr"):
        adv = apgd(o.model, o.inputs, targets, norm=norm, eps=ABOVE[norm] * getattr(o, norm), steps=40, loss=loss,
                   targeted=True)
        assert torch.equal(o.model(adv).argmax(1), targets), loss


def test_random_init_stays_in_the_ball(linear_oracle) -> None:
    o = linear_oracle
    adv = apgd(o.model, o.inputs, o.labels, norm="l2", eps=1.05 * o.l2, steps=30, random_init=True,
               generator=torch.Generator().manual_seed(1))
    assert bool((o.model(adv).argmax(1) != o.labels).all())
    assert bool((lp.l2(o.inputs, adv) <= 1.05 * o.l2 * (1 + 1e-4)).all())


@pytest.fixture(scope="module")
def smallcnn() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    inputs, labels = sample()
    return load_model("smallcnn-fmnist"), inputs[:24], labels[:24]


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize(("norm", "eps", "p"), [("linf", 0.03, float("inf")), ("l2", 0.5, 2.0), ("l1", 3.0, 1.0)])
def test_as_strong_as_adv_lib_apgd(smallcnn, norm: str, eps: float, p: float) -> None:
    """adv-lib 0.2.8's APGD (the authors' algorithm, random start) at the same ε and steps: edgewise's fools at
    least as many of 24 images, up to one (a coin flip of the starting point)."""
    from adv_lib.attacks import apgd as adv_lib_apgd

    model, inputs, labels = smallcnn
    counting = CountingModel(model)
    ours = apgd(counting, inputs, labels, norm=norm, eps=eps, steps=30)
    assert counting.forwards == 30 * 24 and counting.backwards == 30 * 24
    assert bool((getattr(lp, norm)(inputs, ours) <= eps * (1 + 1e-5)).all())
    torch.manual_seed(0)
    theirs = adv_lib_apgd(model, inputs, labels, eps=eps, norm=p, n_iter=30, loss_function="ce")
    with torch.no_grad():
        ours_fooled = int((model(ours).argmax(1) != labels).sum())
        theirs_fooled = int((model(theirs).argmax(1) != labels).sum())
    assert 0 < theirs_fooled < 24, "the comparison needs an ε where some but not all images are fooled"
    assert ours_fooled >= theirs_fooled - 1, (ours_fooled, theirs_fooled)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"norm": "l0"}, ValueError, r"norm must be one of \['l1', 'l2', 'linf'\], got 'l0'"),
    ({"eps": -0.1}, ValueError, "eps must be > 0"),
    ({"steps": 0}, ValueError, "steps must be > 0"),
    ({"loss": "cw"}, ValueError, "loss must be one of"),
    ({"momentum": 1.0}, ValueError, r"momentum must be in \(0, 1\)"),
    ({"rho": "x"}, TypeError, "rho must be a number"),
    ({"eps": torch.ones(3)}, ValueError, "eps must be a number or a floating-point tensor of shape"),
    ({"epsilon": 0.1}, TypeError, "epsilon"),
])
def test_bad_options(linear_oracle, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        apgd(linear_oracle.model, linear_oracle.inputs, linear_oracle.labels, **kwargs)


def test_dlr_needs_three_classes(linear_oracle) -> None:
    o = linear_oracle
    with pytest.raises(ValueError, match="DLR\\+ needs a model with at least 3 classes, got 2"):
        apgd(o.model, o.inputs, o.labels, loss="dlr", steps=2)
