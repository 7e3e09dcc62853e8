"""LPIPS against the `lpips` package with the same random weights, the offline zoo-model variant, and errors."""

import importlib.util
from pathlib import Path

import lpips as lpips_package
import pytest
import torch
from torch import nn

from edgewise.distances import get
from edgewise.distances.lpips import TAPS, WEIGHT_FILES, LPIPSNetwork, model_network
from edgewise.models import load_model


def reference_lpips(net: str, *, heads: bool = False) -> lpips_package.LPIPS:
    """The lpips package's calibrated network with a seeded random backbone (no download) and random non-negative
    heads, or with ``heads`` the calibrated heads shipped in the package. Set ``.lpips = False`` on it for the
    package's uncalibrated path (its ``forward`` reads that flag)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        network = lpips_package.LPIPS(pretrained=heads, pnet_rand=True, net=net, lpips=True, verbose=False)
        if not heads:
            for head in network.lins:
                nn.init.uniform_(head.model[-1].weight)  # non-negative like the trained heads
    return network


def slices(network: lpips_package.LPIPS) -> list[nn.Module]:
    return [layer for k in range(1, 6) for layer in getattr(network.net, f"slice{k}")]


def pair(size: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 3, size, size, generator=generator)
    return x, (x + 0.05 * torch.randn(x.shape, generator=generator)).clamp(0, 1)


@pytest.mark.parametrize(("net", "size"), [("alex", 64), pytest.param("vgg", 32, marks=pytest.mark.slow)])
def test_equals_lpips_package_with_same_weights(net, size):
    reference = reference_lpips(net)
    heads = [head.model[-1].weight for head in reference.lins]
    x, y = pair(size)
    expected = reference(x, y, normalize=True).flatten().detach()
    torch.testing.assert_close(LPIPSNetwork(slices(reference), TAPS[net], heads).bind(x)(y), expected, rtol=0,
                               atol=1e-5)
    reference.lpips = False
    expected = reference(x, y, normalize=True).flatten()
    torch.testing.assert_close(LPIPSNetwork(slices(reference), TAPS[net]).bind(x)(y), expected, rtol=0, atol=1e-5)


def save_backbone(network: lpips_package.LPIPS, torch_home: Path) -> None:
    """Write the backbone where torchvision caches its ImageNet weights, under the "features." keys it uses."""
    state = {f"features.{k}": v for k, v in nn.Sequential(*slices(network)).state_dict().items()}
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, torch_home / "hub" / "checkpoints" / WEIGHT_FILES["alex"])


def test_registry_path_loads_backbone_from_torch_cache_and_heads_from_package(tmp_path, monkeypatch):
    reference = reference_lpips("alex", heads=True)
    save_backbone(reference, tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    x, y = pair(64)
    expected = reference(x, y, normalize=True).flatten().detach()
    torch.testing.assert_close(get("lpips")(x)(y), expected, rtol=0, atol=1e-5)
    reference.lpips = False
    expected = reference(x, y, normalize=True).flatten()
    torch.testing.assert_close(get("lpips", calibrated=False)(x)(y), expected, rtol=0, atol=1e-5)


def test_missing_backbone_weights_say_what_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"alexnet-owt-7be5be79\.pth.*IMAGENET1K_V1.*features="):
        get("lpips")(torch.rand(1, 3, 64, 64))
    with pytest.raises(RuntimeError, match=r"vgg16-397923af\.pth.*models\.vgg16"):
        get("lpips", net="vgg")(torch.rand(1, 3, 64, 64))


def test_missing_lpips_package_says_how_to_get_the_heads(tmp_path, monkeypatch):
    save_backbone(reference_lpips("alex", heads=True), tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lpips" else find_spec(name, *a))
    with pytest.raises(RuntimeError, match=r"pip install lpips.*calibrated=False"):
        get("lpips", calibrated=True)(torch.rand(1, 3, 64, 64))


def relu_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Independent tap: forward hooks on every ReLU of the model (removed afterwards)."""
    outputs: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for m in model.modules()
               if isinstance(m, nn.ReLU)]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


@pytest.mark.parametrize("name", ["smallcnn-fmnist", "mlp-fmnist", "allcnn-fmnist"])
def test_zoo_features_equal_lpips_formula_on_relu_activations(name):
    model = load_model(name)
    x, y = pair(28, seed=2)
    x, y = x[:, :1], y[:, :1]
    expected = sum(
        lpips_package.spatial_average(
            (lpips_package.normalize_tensor(a.view(*a.shape[:2], *a.shape[2:], *[1] * (4 - a.dim())))
             - lpips_package.normalize_tensor(b.view(*b.shape[:2], *b.shape[2:], *[1] * (4 - b.dim())))
             ).square().sum(1, keepdim=True)).flatten()
        for a, b in zip(relu_outputs(model, x), relu_outputs(model, y), strict=True))
    with torch.no_grad():
        torch.testing.assert_close(get("lpips", features=model)(x)(y), expected, rtol=1e-5, atol=1e-6)
    assert not model.training


def test_no_nan_gradient_where_activations_vanish():
    """All-zero ReLU outputs: the norm's sqrt is at 0 (the lpips package gets NaN there)."""
    dead = nn.Conv2d(3, 4, 3)
    nn.init.zeros_(dead.weight)
    nn.init.constant_(dead.bias, -1.0)
    network = LPIPSNetwork([nn.Conv2d(3, 3, 1), nn.ReLU(), dead, nn.ReLU()], [1, 3], scaling=False)
    x, y = pair(8)
    y = y.requires_grad_(True)
    (grad,) = torch.autograd.grad(network.bind(x)(y).sum(), y)
    assert torch.isfinite(grad).all()


def test_feature_model_errors():
    with pytest.raises(TypeError, match=r"features must be an nn\.Sequential model"):
        model_network(nn.ReLU())
    model = load_model("smallcnn-fmnist").train()
    with pytest.raises(ValueError, match="eval mode"):
        model_network(model)
    with pytest.raises(ValueError, match="no calibrated heads"):
        get("lpips", features=load_model("smallcnn-fmnist"), calibrated=True)(torch.rand(1, 1, 28, 28))
    with pytest.raises(ValueError, match="ReLU"):
        model_network(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval())
    with pytest.raises(ValueError, match="net must be one of"):
        get("lpips", net="resnet")(torch.rand(1, 3, 64, 64))
    with pytest.raises(TypeError):
        get("lpips", spatial=True)(torch.rand(1, 3, 64, 64))


def test_gradcheck_alexnet_both_variants():
    reference = reference_lpips("alex").double()
    heads = [head.model[-1].weight for head in reference.lins]
    x, y = (t.double() for t in pair(32))
    for variant in (heads, None):
        network = LPIPSNetwork(slices(reference), TAPS["alex"], variant)
        assert torch.autograd.gradcheck(network.bind(x), (y.requires_grad_(True),), fast_mode=True)


def test_no_nan_gradient_where_a_tapped_output_that_is_not_a_relu_vanishes():
    """A tap whose output is exactly 0 at every position (here a convolution with zero weights): no ReLU after it
    masks the sqrt's infinite derivative at 0, so the stand-in for the norm's root is all that keeps NaN out."""
    dead = nn.Conv2d(3, 4, 3)
    nn.init.zeros_(dead.weight)
    nn.init.zeros_(dead.bias)
    network = LPIPSNetwork([nn.Conv2d(3, 3, 1), nn.ReLU(), dead], [1, 2], scaling=False)
    x, y = pair(8)
    y = y.requires_grad_(True)
    (grad,) = torch.autograd.grad(network.bind(x)(y).sum(), y)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("taps", [[2, 1], [1, 1], [-1, 1], [1, 4], []])
def test_taps_must_be_increasing_indices_into_the_layers(taps):
    with pytest.raises(ValueError, match=r"^taps must be increasing indices into the 4 layers"):
        LPIPSNetwork([nn.Conv2d(3, 3, 1), nn.ReLU(), nn.Conv2d(3, 3, 1), nn.ReLU()], taps)


def test_missing_heads_file_says_how_to_get_it(tmp_path, monkeypatch):
    save_backbone(reference_lpips("alex", heads=True), tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "lpips").mkdir()
    (tmp_path / "lpips" / "__init__.py").write_text("")
    fake = importlib.util.spec_from_file_location("lpips", tmp_path / "lpips" / "__init__.py")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: fake if name == "lpips" else find_spec(name, *a))
    with pytest.raises(RuntimeError, match=r"no heads file .*force-reinstall lpips.*, or use calibrated=False$"):
        get("lpips", calibrated=True)(torch.rand(1, 3, 64, 64))


def test_features_do_not_depend_on_the_default_dtype():
    # The input scaling's constants are made in the images' dtype: float64 features are the same whatever
    # torch's default dtype (a constant made without dtype= would follow it, rounded to float32 by default).
    torch.manual_seed(0)
    network = LPIPSNetwork([nn.Conv2d(3, 4, 3), nn.ReLU()], [1]).double()
    x = pair(8)[0].double()
    expected = network.features(x)[0]
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        found = network.features(x)[0]
    finally:
        torch.set_default_dtype(default)
    assert torch.equal(found, expected)


def test_grey_images_are_compared_as_three_equal_channels():
    # An ImageNet backbone (scaling on) takes 3 channels: a grey image is its 3-channel repeat.
    torch.manual_seed(0)
    network = LPIPSNetwork([nn.Conv2d(3, 4, 3), nn.ReLU()], [1])
    x, y = pair(8)
    grey_x, grey_y = x[:, :1], y[:, :1]
    torch.testing.assert_close(network.bind(grey_x)(grey_y), network.bind(grey_x.expand(-1, 3, -1, -1))(
        grey_y.expand(-1, 3, -1, -1)), rtol=0, atol=0)


def test_images_too_small_for_the_backbone_are_refused_by_name(tmp_path, monkeypatch):
    # AlexNet's last tap is empty below 31 x 31 (Fashion-MNIST's 28 x 28 failed deep in a max-pool with torch's
    # "Output size is too small"); the lpips package itself computes at 31 and fails at 30.
    reference = reference_lpips("alex", heads=True)
    save_backbone(reference, tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    x, y = pair(31)
    torch.testing.assert_close(get("lpips")(x)(y), reference(x, y, normalize=True).flatten().detach(), rtol=0,
                               atol=1e-5)
    small = torch.rand(2, 1, 28, 30)
    with pytest.raises(RuntimeError):
        reference(small, small, normalize=True)
    with pytest.raises(ValueError, match=r"^reference must be at least 31x31 for LPIPS net='alex'.*got \(28, 30\)"):
        get("lpips")(small)
    with pytest.raises(ValueError, match=r"^reference must be at least 16x16 for LPIPS net='vgg'.*got \(15, 15\)"):
        get("lpips", net="vgg")(torch.rand(1, 3, 15, 15))
    with pytest.raises(ValueError, match=r"^reference must have shape \(B, 1 or 3, H, W\).*got \(1, 4, 64, 64\)"):
        get("lpips")(torch.rand(1, 4, 64, 64))
