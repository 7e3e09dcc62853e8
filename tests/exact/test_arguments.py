"""edgewise.exact.minimal refuses what it cannot honour, in one error naming the argument: keywords of the wrong
kind or range, and modules whose class computes something other than the layer it would be read as."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from edgewise.exact import minimal

pytest.importorskip("pyscipopt")
pytest.importorskip("highspy")


def tiny() -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3)).eval()
    inputs = torch.rand(2, 3, generator=torch.Generator().manual_seed(3))
    return model, inputs, model(inputs).argmax(1)


@pytest.mark.parametrize("gap", [1.0, 2.0])
def test_a_gap_of_one_or_more_is_refused(gap: float) -> None:
    # The question "any adversarial within d (1 − gap)?" had a radius <= 0: "optimal" with lower bounds <= 0.
    model, inputs, labels = tiny()
    starts = inputs.clone()
    with pytest.raises(ValueError, match=r"gap must be in \[0, 1\)"):
        minimal(model, inputs, labels, norm="linf", time_limit=5, gap=gap, starts=starts)


@pytest.mark.parametrize(("keyword", "value", "error", "message"), [
    ("tighten", "no", TypeError, "tighten must be a bool"),
    ("upper", "0.5", TypeError, r"upper must be None, a number or a \(2,\) tensor"),
    ("upper", True, TypeError, r"upper must be None, a number or a \(2,\) tensor"),
    ("starts", [[0.5, 0.5, 0.5]] * 2, TypeError, "starts must be a floating-point tensor"),
    ("starts", torch.full((2, 3), float("nan")), ValueError, r"starts must be finite and in \[0, 1\]"),
    ("starts", torch.full((2, 3), 1.5), ValueError, r"starts must be finite and in \[0, 1\]"),
], ids=["tighten-str", "upper-str", "upper-bool", "starts-list", "starts-nan", "starts-outside-box"])
def test_a_keyword_of_the_wrong_kind_is_refused(keyword: str, value: object, error: type[Exception],
                                                message: str) -> None:
    model, inputs, labels = tiny()
    with pytest.raises(error, match=message):
        minimal(model, inputs, labels, norm="linf", time_limit=5, **{keyword: value})


def test_a_callable_that_is_not_a_module_is_refused() -> None:
    model, inputs, labels = tiny()
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        minimal(lambda v: model(v), inputs, labels, norm="linf", time_limit=5)  # type: ignore[arg-type]


class KinkedSequential(nn.Sequential):
    """Its layers, plus a jump of class 1's logit once the first input passes 0.42: a forward that is not the
    sequence of its modules, though it agrees with it on every input below 0.42."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        jump = torch.zeros(1, 3, dtype=inputs.dtype)
        jump[0, 1] = 100.0
        return super().forward(inputs) + F.relu(inputs[:, :1] - 0.42) * jump


class ClippedLinear(nn.Linear):
    """A Linear whose outputs are clipped to [-1, 1]: not affine, though affine on small inputs."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return super().forward(inputs).clamp(-1.0, 1.0)


class SoftReLU(nn.ReLU):
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(inputs, 0.2)


def _custom(kind: str) -> nn.Sequential:
    torch.manual_seed(5)
    if kind == "sequential":
        return KinkedSequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3)).eval()
    if kind == "nested-sequential":
        return nn.Sequential(KinkedSequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3))).eval()
    if kind == "linear":
        return nn.Sequential(ClippedLinear(3, 4), nn.ReLU(), nn.Linear(4, 3)).eval()
    return nn.Sequential(nn.Linear(3, 4), SoftReLU(), nn.Linear(4, 3)).eval()


@pytest.mark.parametrize("kind", ["sequential", "nested-sequential", "linear", "relu"])
def test_a_module_whose_class_overrides_forward_is_refused(kind: str) -> None:
    # The Sequential's jump makes the input's first entry moved to 0.43 adversarial (ℓ∞ 0.03), closer than any
    # adversarial of its plain layers (whose certificate was read instead); on the input the forward equals its
    # layers', so the check of the reading against the forward cannot see it.
    model = _custom(kind)
    inputs = torch.full((1, 3), 0.4)
    if kind == "sequential":
        moved = inputs.clone()
        moved[0, 0] = 0.43
        plain = nn.Sequential(*model.children())
        with torch.no_grad():
            assert torch.equal(model(inputs), plain(inputs))
            assert model(moved).argmax(1) != model(inputs).argmax(1) == plain(moved).argmax(1)
    labels = model(inputs).argmax(1)
    with pytest.raises(ValueError, match="overrides forward"):
        minimal(model, inputs, labels, norm="linf", time_limit=5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_model_on_the_gpu_is_read_and_verified_there() -> None:
    # The probes were CPU tensors sent through the model on its device, and the solver's points were verified as
    # CPU tensors against inputs on the GPU: a RuntimeError from torch, also in `edgewise exact --device cuda`'s
    # check of the network before the attacks.
    model, inputs, labels = tiny()
    on_cpu = minimal(model, inputs, labels, norm="linf", time_limit=5)
    on_gpu = minimal(model.cuda(), inputs.cuda(), labels.cuda(), norm="linf", time_limit=5)
    assert on_gpu.adversarial.device.type == "cuda"
    assert on_gpu.status == on_cpu.status
    assert torch.allclose(on_gpu.distance, on_cpu.distance, rtol=1e-4)


@pytest.mark.parametrize("where", ["sequential", "layer"])
def test_a_module_with_forward_hooks_is_refused(where: str) -> None:
    # The Sequential's hooks never ran in the layer-by-layer reading, and a layer's ran inside its affine probes:
    # the same jump as KinkedSequential's, as a hook, was certified away.
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3)).eval()

    def jump(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        bump = torch.zeros_like(output)
        bump[:, 1] = 100.0
        return output + F.relu(args[0][:, :1] - 0.42) * bump

    (model if where == "sequential" else model[0]).register_forward_hook(jump)
    inputs = torch.full((1, 3), 0.4)
    labels = model(inputs).argmax(1)
    with pytest.raises(ValueError, match="forward hooks"):
        minimal(model, inputs, labels, norm="linf", time_limit=5)


def test_a_batchnorm_without_running_statistics_is_refused_by_name() -> None:
    # In eval mode it still normalizes by the batch's statistics: no affine map of one input, refused before in
    # words that blamed the forward ("needs a plain nn.Sequential network").
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.BatchNorm2d(2, track_running_stats=False), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8, 3)).eval()
    inputs = torch.rand(2, 1, 3, 3, generator=torch.Generator().manual_seed(1))
    labels = model(inputs).argmax(1)
    with pytest.raises(ValueError, match=r"module '1' is a BatchNorm2d without running statistics"):
        minimal(model, inputs, labels, norm="linf", time_limit=5)
