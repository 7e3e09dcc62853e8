"""How robust are the zoo's robust models? Minimal distances and accuracy under ℓ∞ / ℓ2 / ℓ1 attacks, and
"all attacks", in the layout of Table A6 of the min-max supplement.

    python benchmarks/robust_training.py [--n 500] [--models smallcnn-fmnist,smallcnn-ddn-fmnist,...] [--update-zoo]

Per model, on the first n images of the shipped sample, every attack through edgewise.eval.run_attack (counted,
re-verified): PGD (20 steps, random start) at ℓ∞ ε = 0.1, ℓ2 ε = 1.5 and ℓ1 ε = 10; DDN and ALMA ℓ2 (100 steps)
and ALMA ℓ1 (100 steps), minimal attacks whose distances also count against the ℓ2 / ℓ1 budgets. A sample is
robust to a threat when no attack of that norm found a verified adversarial within ε; "all attacks" when robust
to all three. Clean errors count as not robust. Results are cached per (model, attack) batch under
benchmarks/results/robust_training/ (an interrupted run resumes). Writes benchmarks/results/robust_training.{md,json};
``--update-zoo`` records each model's numbers in its zoo metadata (src/edgewise/models/weights/NAME.json).
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from edgewise.attacks import alma, ddn, pgd
from edgewise.data import sample
from edgewise.eval import run_attack
from edgewise.eval.metrics import EPS_TOLERANCE
from edgewise.models import list_models, load_model

RESULTS = Path(__file__).parent / "results"
WEIGHTS = Path(__file__).parent.parent / "src" / "edgewise" / "models" / "weights"
MODELS = ("smallcnn-fmnist", "smallcnn-pgd-fmnist", "smallcnn-ddn-fmnist", "smallcnn-avg-fmnist",
          "smallcnn-max-fmnist", "smallcnn-msd-fmnist", "smallcnn-ampgd-fmnist")
THREATS = {"linf": 0.1, "l2": 1.5, "l1": 10.0}
# attack name -> (norm whose budget it tests, attack)
ATTACKS: dict[str, tuple[str, Callable[..., torch.Tensor]]] = {
    "pgd-linf": ("linf", functools.partial(pgd, norm="linf", eps=THREATS["linf"], steps=20, random_init=True)),
    "pgd-l2": ("l2", functools.partial(pgd, norm="l2", eps=THREATS["l2"], steps=20, random_init=True)),
    "pgd-l1": ("l1", functools.partial(pgd, norm="l1", eps=THREATS["l1"], steps=20, random_init=True)),
    "ddn": ("l2", functools.partial(ddn, steps=100)),
    "alma-l2": ("l2", functools.partial(alma, distance="l2", steps=100)),
    "alma-l1": ("l1", functools.partial(alma, distance="l1", steps=100)),
}


def evaluate(name: str, inputs: torch.Tensor, labels: torch.Tensor, *, batch_size: int) -> dict[str, Any]:
    model = load_model(name)
    robust = {norm: torch.ones(len(labels), dtype=torch.bool) for norm in THREATS}
    medians: dict[str, float] = {}
    clean = 0.0
    for attack_name, (norm, attack) in ATTACKS.items():
        result = run_attack(model, inputs, labels, attack, batch_size=batch_size,
                            resume_dir=RESULTS / "robust_training" / name / attack_name, progress=False)
        distance = result.distances[norm]
        robust[norm] &= ~(result.success & (distance <= THREATS[norm] * (1 + EPS_TOLERANCE)))  # float32 rounding
        clean = float(result.clean_correct.double().mean())
        if not attack_name.startswith("pgd"):
            medians[f"median {norm} ({attack_name})"] = float(distance.median())
        print(f"  {name} {attack_name}: success {float(result.success.double().mean()):.3f}", flush=True)
    every = robust["linf"] & robust["l2"] & robust["l1"]
    accuracy = {f"{norm} (eps {eps:g})": float(robust[norm].double().mean()) for norm, eps in THREATS.items()}
    accuracy["all attacks"] = float(every.double().mean())
    return {"clean_accuracy_sample": clean, "robust_accuracy": accuracy, **medians}


def markdown(rows: dict[str, dict[str, Any]], n: int) -> str:
    columns = ["clean_accuracy_sample", *[f"{norm} (eps {eps:g})" for norm, eps in THREATS.items()], "all attacks"]
    lines = [f"First {n} images of the shipped Fashion-MNIST sample. Accuracy under attack: PGD-20 (ℓ∞, ℓ2, ℓ1) "
             "and the minimal attacks DDN / ALMA-ℓ2 (ℓ2) and ALMA-ℓ1 (ℓ1), 100 steps, within ε.", "",
             "| model | clean | ℓ∞ ε=0.1 | ℓ2 ε=1.5 | ℓ1 ε=10 | all attacks | median ℓ2 (DDN) | median ℓ2 (ALMA) "
             "| median ℓ1 (ALMA) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        robust = row["robust_accuracy"]
        values = [row[columns[0]], *[robust[c] for c in columns[1:]]]
        cells = " | ".join(f"{100 * float(v):.1f}%" for v in values)
        medians = " | ".join(f"{float(row[k]):.3f}" for k in ("median l2 (ddn)", "median l2 (alma-l2)",
                                                              "median l1 (alma-l1)"))
        lines.append(f"| {name} | {cells} | {medians} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--update-zoo", action="store_true", help="record the numbers in the zoo metadata")
    args = parser.parse_args()
    zoo = list_models()
    names = [name for name in args.models.split(",") if name]
    missing = [name for name in names if name not in zoo]
    for name in missing:
        print(f"skipping {name}: not in the zoo")
    inputs, labels = sample()
    inputs, labels = inputs[: args.n], labels[: args.n]
    rows = {name: evaluate(name, inputs, labels, batch_size=args.batch_size) for name in names if name in zoo}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "robust_training.json").write_text(json.dumps({"n": args.n, "results": rows}, indent=1) + "\n")
    table = markdown(rows, args.n)
    (RESULTS / "robust_training.md").write_text(table)
    print(table)
    if args.update_zoo:
        for name, row in rows.items():
            path = WEIGHTS / f"{name}.json"
            meta = json.loads(path.read_text())
            meta["robustness"] = {"n": args.n, "data": "shipped sample", "script": "benchmarks/robust_training.py",
                                  **row}
            path.write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
