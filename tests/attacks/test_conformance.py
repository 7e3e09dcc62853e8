"""The contract of DESIGN.md, checked for every attack in the registry (a new attack gets it for free)."""

from __future__ import annotations

import inspect

import pytest
import torch

from edgewise.attacks import ATTACKS
from edgewise.data import sample
from edgewise.eval import AttackResult, run_attack
from edgewise.models import CountingModel, load_model

STEPS = 8
ROUNDS = 2  # binary_search_steps of the attacks that search (C&W over c, the minimal forms over ε)


@pytest.fixture(scope="module")
def setting():
    model = load_model("smallcnn-fmnist")
    inputs, labels = sample()
    return model, inputs[::100][:6].clone(), labels[::100][:6].clone()


def call(name: str, model, inputs, labels, **extra):
    function = ATTACKS[name]
    parameters = inspect.signature(function).parameters
    kwargs = {"steps": STEPS} if "steps" in parameters else {}
    if "binary_search_steps" in parameters:
        kwargs["binary_search_steps"] = ROUNDS
    if "eps" in parameters and parameters["eps"].default is inspect.Parameter.empty:
        kwargs["eps"] = 0.3
    return function(model, inputs, labels, **kwargs, **extra)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_contract(name: str, setting) -> None:
    model, inputs, labels = setting
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs_copy = inputs.clone()
    adv = call(name, model, inputs, labels, generator=torch.Generator().manual_seed(0))
    assert adv.shape == inputs.shape and adv.dtype == inputs.dtype and adv.device == inputs.device
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1 and bool(torch.isfinite(adv).all())
    assert torch.equal(inputs, inputs_copy), "the caller's tensor was modified"
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_same_seed_same_output_and_no_global_rng(name: str, setting) -> None:
    model, inputs, labels = setting
    state = torch.get_rng_state()
    first = call(name, model, inputs, labels, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state), "the attack drew from the global RNG"
    second = call(name, model, inputs, labels, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_sample_alone_equals_sample_in_batch(name: str, setting) -> None:
    model, inputs, labels = setting
    together = call(name, model, inputs, labels)
    alone = call(name, model, inputs[2:3], labels[2:3])
    torch.testing.assert_close(alone[0], together[2], atol=2e-3, rtol=0)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_unknown_keyword_is_a_type_error(name: str, setting) -> None:
    model, inputs, labels = setting
    with pytest.raises(TypeError, match="no_such_option"):
        call(name, model, inputs, labels, no_such_option=1)


@pytest.mark.parametrize(("name", "rounds"), [("alma", 1), ("apgd", 1), ("ddn", 1), ("fmn", 1), ("pgd", 1),
                                             ("cw", ROUNDS), ("apgd_minimal", ROUNDS), ("pgd_minimal", ROUNDS)])
def test_budget_is_steps_forwards_and_backwards(name: str, rounds: int, setting) -> None:
    """The declared budget: ``steps`` per sample, times the rounds of a search (C&W's over c, the minimal
    forms' over ε, which check the inputs themselves with one forward more)."""
    model, inputs, labels = setting
    counting = CountingModel(model)
    call(name, counting, inputs, labels)
    budget = rounds * STEPS * len(inputs)
    clean_check = len(inputs) if name.endswith("_minimal") else 0
    assert counting.forwards == budget + clean_check and counting.backwards == budget


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_generator_is_a_keyword_only_option(name: str) -> None:
    parameter = inspect.signature(ATTACKS[name]).parameters.get("generator")
    assert parameter is not None and parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is None


def _bound(name: str):
    def attack(model, inputs, labels, *, generator=None):
        return call(name, model, inputs, labels, generator=generator)

    return attack


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_run_attack_is_bit_identical_and_batches_are_independent(name: str, setting) -> None:
    """Same seed, same bits; a batch's results do not depend on the batches before it (what resume and
    sharding rely on: the generator is seeded from the seed and the batch's first index)."""
    model, inputs, labels = setting
    first, second = (run_attack(model, inputs[:4], labels[:4], _bound(name), batch_size=2, seed=7, progress=False,
                                checks=False) for _ in range(2))
    alone = run_attack(model, inputs[2:4], labels[2:4], _bound(name), batch_size=2, seed=7, progress=False,
                       checks=False, indices=torch.tensor([2, 3]))
    for field in AttackResult.__dataclass_fields__:
        if field not in ("distances", "seconds"):
            assert torch.equal(getattr(first, field), getattr(second, field)), field
            assert torch.equal(getattr(first, field)[2:], getattr(alone, field)), field
    for key, value in first.distances.items():
        assert torch.equal(value, second.distances[key]) and torch.equal(value[2:], alone.distances[key]), key


def _stochastic(seed: int = 0) -> torch.nn.Module:
    """A classifier of 1×28×28 images with BatchNorm and Dropout, whose output depends on its mode."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 16), torch.nn.BatchNorm1d(16),
                               torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(16, 10))


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_a_model_in_train_mode_is_refused_and_left_as_it_was(name: str, setting) -> None:
    """An attack on a model in train mode would attack dropout draws and batch statistics (distances that do not
    verify in eval mode) and update BatchNorm's running statistics; attacks never change the mode, so they refuse."""
    _, inputs, labels = setting
    model = _stochastic().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"model must be in eval mode .*model\.eval\(\).*got 7 module"):
        call(name, model, inputs, labels)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()
    model[4].train()  # one submodule left in train mode is found too
    with pytest.raises(ValueError, match=r"eval mode .*got 1 module\(s\) in train mode: 4"):
        call(name, model, inputs, labels)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_targeted_must_be_a_bool(name: str, setting) -> None:
    """``targeted="no"`` (a value read from a config file) is truthy: it would silently run a targeted attack."""
    model, inputs, labels = setting
    for value in ("no", 1, None):
        with pytest.raises(TypeError, match=r"targeted must be a bool, got (str|int|NoneType)"):
            call(name, model, inputs, labels, targeted=value)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_inputs_of_another_dtype_or_device_than_the_model_are_refused(name: str, setting) -> None:
    model, inputs, labels = setting
    with pytest.raises(ValueError, match=r"inputs must have the dtype of the model's parameters \(torch.float32\), "
                                         r"got torch.float64"):
        call(name, model, inputs.double(), labels)
    with pytest.raises(ValueError, match=r"inputs must be on the device of the model's parameters \(meta\), got cpu"):
        call(name, _stochastic().eval().to("meta"), inputs, labels)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_a_model_with_one_class_is_refused(name: str, setting) -> None:
    """With one class nothing can be misclassified: some attacks returned the inputs as failures, others failed
    deep inside on an internal option."""
    _, inputs, labels = setting
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 1)).eval()
    with pytest.raises(ValueError, match=r"model must return logits for at least 2 classes, got 1"):
        call(name, model, inputs, torch.zeros_like(labels))


@pytest.mark.parametrize(("name", "option"), [("pgd", "random_init"), ("apgd", "random_init")])
def test_flags_must_be_bools(name: str, option: str, setting) -> None:
    model, inputs, labels = setting
    with pytest.raises(TypeError, match=rf"{option} must be a bool, got str"):
        call(name, model, inputs, labels, **{option: "no"})


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_inputs_that_require_grad_give_no_warning(name: str, setting, recwarn: pytest.WarningsRecorder) -> None:
    model, inputs, labels = setting
    call(name, model, inputs[:2].clone().requires_grad_(), labels[:2])
    assert not [w for w in recwarn if "requires_grad" in str(w.message)], [str(w.message) for w in recwarn]
