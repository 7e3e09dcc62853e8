import copy
import functools
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from edgewise.attacks import alma, ddn
from edgewise.eval.provenance import check_record, describe_attack, fingerprint_model, fingerprint_tensor


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 6 * 6, 3)).eval()


def test_model_fingerprint_sees_every_weight_and_buffer() -> None:
    model = _model()
    reference = fingerprint_model(model)
    assert reference == fingerprint_model(copy.deepcopy(model))
    assert len(reference) == 64 and int(reference, 16) >= 0
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            continue
        changed = copy.deepcopy(model)
        with torch.no_grad():
            flat = changed.state_dict()[name].view(-1)
            flat[-1] = torch.nextafter(flat[-1], torch.tensor(float("inf")))  # one ulp, last element
        assert fingerprint_model(changed) != reference, name


def test_model_fingerprint_works_for_torchscript() -> None:
    model = _model()
    scripted = torch.jit.script(model)
    first = fingerprint_model(scripted)
    assert first == fingerprint_model(torch.jit.script(copy.deepcopy(model)))
    with torch.no_grad():
        next(scripted.parameters()).add_(1e-3)
    assert fingerprint_model(scripted) != first


def test_tensor_fingerprint_is_exact_identity_of_values_dtype_and_shape() -> None:
    x = torch.arange(12, dtype=torch.float32).view(3, 4)
    assert fingerprint_tensor(x) == fingerprint_tensor(x.clone())
    assert fingerprint_tensor(x.t()) == fingerprint_tensor(x.t().contiguous())  # layout is not identity
    assert fingerprint_tensor(x) != fingerprint_tensor(x.view(4, 3))          # same bytes, other shape
    assert fingerprint_tensor(x) != fingerprint_tensor(x.view(torch.int32))   # same bytes, other dtype
    y = x.clone()
    y[2, 3] = torch.nextafter(y[2, 3], torch.tensor(0.0))
    assert fingerprint_tensor(x) != fingerprint_tensor(y)
    assert fingerprint_tensor(torch.empty(0)) != fingerprint_tensor(torch.empty(0, 2))
    assert fingerprint_tensor(torch.ones(2, dtype=torch.bfloat16)) != fingerprint_tensor(torch.ones(2))
    with pytest.raises(TypeError, match=r"tensor must be a torch\.Tensor, got list"):
        fingerprint_tensor([1, 2])  # type: ignore[arg-type]


def test_attack_description_names_function_and_every_bound_option() -> None:
    description = describe_attack(functools.partial(ddn, steps=10, levels=None))
    assert json.loads(json.dumps(description)) == description  # JSON-able as it is
    assert description["partial"]["func"] == "edgewise.attacks.ddn.ddn"
    assert description["keywords"] == {"steps": 10, "levels": None}
    assert description["partial"]["defaults"]["gamma"] == 0.05  # defaults are part of what runs
    assert description == describe_attack(functools.partial(ddn, steps=10, levels=None))
    assert description != describe_attack(functools.partial(ddn, steps=11, levels=None))
    assert description != describe_attack(functools.partial(alma, steps=10, levels=None))
    assert describe_attack(ddn)["func"] == "edgewise.attacks.ddn.ddn"
    nan = describe_attack(functools.partial(ddn, gamma=float("nan")))
    assert nan == describe_attack(functools.partial(ddn, gamma=float("nan")))


def test_attack_description_digests_tensors_modules_and_closures() -> None:
    weights = torch.ones(3)
    assert describe_attack(functools.partial(ddn, init_norm=weights)) != describe_attack(
        functools.partial(ddn, init_norm=weights * 2))
    assert describe_attack(functools.partial(ddn, init_norm=weights)) == describe_attack(
        functools.partial(ddn, init_norm=weights.clone()))
    model = _model()
    other = copy.deepcopy(model)
    with torch.no_grad():
        other[0].bias.add_(1)
    assert describe_attack(functools.partial(ddn, init_norm=model)) != describe_attack(
        functools.partial(ddn, init_norm=other))

    def adapter(model, inputs, labels):  # a closure renamed after what it runs, as baselines are
        return ddn(model, inputs, labels)

    adapter.__name__ = "adv-lib:ddn"
    assert describe_attack(adapter)["name"] == "adv-lib:ddn"

    class Callback:
        def __call__(self, **values: object) -> None:
            pass

    # An object without a stable form is described by its class, never by a repr holding its address.
    assert describe_attack(functools.partial(ddn, init_norm=Callback())) == describe_attack(
        functools.partial(ddn, init_norm=Callback()))
    assert describe_attack(functools.partial(ddn, init_norm=Callback())) != describe_attack(ddn)
    # The callback only observes (diagnostics): tracing a run does not make it another run.
    assert describe_attack(functools.partial(ddn, steps=3, callback=Callback())) == describe_attack(
        functools.partial(ddn, steps=3))
    with pytest.raises(TypeError, match="attack must be callable, got str"):
        describe_attack("ddn")  # type: ignore[arg-type]


def test_check_record_writes_then_refuses_another_run(tmp_path: Path) -> None:
    path = tmp_path / "folder" / "record.json"
    record = {"model": "abc", "attack": {"func": "ddn", "keywords": {"steps": 10}}, "seed": 0, "eps": [0.5]}
    check_record(path, record)
    assert json.loads(path.read_text()) == record
    check_record(path, record)  # the same run again: fine
    with pytest.raises(ValueError, match=r"^\S*folder was written by a run with attack.keywords.steps=10, this "
                                         r"run has attack.keywords.steps=20: use another folder or delete it$"):
        check_record(path, {**record, "attack": {"func": "ddn", "keywords": {"steps": 20}}})
    with pytest.raises(ValueError, match="--out results/x was written by a run with seed=0, this run has seed=1"):
        check_record(path, {**record, "seed": 1}, label="--out results/x")
    with pytest.raises(ValueError, match="with model='abc', this run has model=None"):
        check_record(path, {k: v for k, v in record.items() if k != "model"})
    with pytest.raises(ValueError, match="with extra=None, this run has extra=1"):
        check_record(path, {**record, "extra": 1})
    assert json.loads(path.read_text()) == record, "a refused run must leave the record as it was"
    check_record(path, {**record, "eps": [1.0]}, ignore=("eps",))  # summary-only options do not invalidate
    assert json.loads(path.read_text())["eps"] == [1.0]
    assert sorted(p.name for p in path.parent.iterdir()) == ["record.json"]
    path.write_text("{not json")
    with pytest.raises(ValueError, match="holds an unreadable record"):
        check_record(path, record)


def test_work_finished_by_other_edgewise_code_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An attack's description names its function, not its code: the same command after an edit of the source
    # (the same version string) must not hand back the batches the old code computed.
    from edgewise.eval import provenance, run_attack

    model = _model()
    inputs = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = model(inputs).argmax(1)
    attack = functools.partial(ddn, steps=2)
    run_attack(model, inputs, labels, attack, batch_size=4, resume_dir=tmp_path, progress=False, checks=False)
    assert json.loads((tmp_path / "run.json").read_text())["edgewise"]["source"] == provenance.source_digest()
    run_attack(model, inputs, labels, attack, batch_size=4, resume_dir=tmp_path, progress=False, checks=False)
    monkeypatch.setattr(provenance, "source_digest", lambda: "0" * 64)
    with pytest.raises(ValueError, match=r"edgewise\.source='[0-9a-f]{64}', this run has edgewise\.source='0{64}'"):
        run_attack(model, inputs, labels, attack, batch_size=4, resume_dir=tmp_path, progress=False, checks=False)


def test_tree_digest_sees_every_source_file_its_path_and_bytes(tmp_path: Path) -> None:
    from edgewise.eval.provenance import tree_digest

    (tmp_path / "attacks").mkdir()
    (tmp_path / "attacks" / "ddn.py").write_text("steps = 100\n")
    (tmp_path / "run.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("not code")
    first = tree_digest(tmp_path)
    (tmp_path / "notes.txt").write_text("changed")
    assert tree_digest(tmp_path) == first
    (tmp_path / "attacks" / "ddn.py").write_text("steps = 101\n")
    assert tree_digest(tmp_path) != first
    (tmp_path / "attacks" / "ddn.py").write_text("steps = 100\n")
    assert tree_digest(tmp_path) == first
    (tmp_path / "attacks" / "ddn.py").rename(tmp_path / "attacks" / "fmn.py")
    assert tree_digest(tmp_path) != first
