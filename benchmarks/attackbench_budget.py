"""AttackBench's protocol on the zoo: every attack of every library at one query budget, LO per model, GO.

    python benchmarks/attackbench_budget.py --models smallcnn-fmnist,smallcnn-kwta-fmnist --distance l2 \\
        --budget 1000 --n 500 [--attacks ddn,fmn-l2,...] [--name NAME]

Every attack runs under :func:`edgewise.eval.benchmark.budgeted` (``--budget`` forward + backward passes per
sample, the distance per sample the best successful point it queried; ``--budget / 2`` steps each), on the last
``--n`` Fashion-MNIST test images outside the shipped sample, every image counted (clean errors at distance 0, as
AttackBench's clean accuracy does): held out from the shipped sample, where edgewise is compared with the other
libraries, and from the first held-out images, which the parameter sweeps use. The reference per sample is the
smallest distance any attack found; LO and GO as in :mod:`edgewise.eval.metrics`.

Default attacks: edgewise's minimal attacks for ``--distance`` and every installed baseline that minimizes it.
Writes benchmarks/results/attackbench-NAME/ (report.md, report.json, robust_accuracy-MODEL.png and
distances.json with the per-sample distances of every attack and of the reference); the finished cells are kept
under runs/attackbench-NAME/ and reused when the same command runs again (with more models or attacks, only the
new cells run). ``--finished-only`` runs nothing: it reports, per model, the attacks whose cells have finished
(runs of several processes, one per model or per attack, share the cells folder); GO is then the mean over the
models an attack ran on (the report's "models" column). Needs the Fashion-MNIST test split
(``apt-get install dataset-fashion-mnist``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from edgewise.cli.benchmark import attack_specs
from edgewise.data import fashion_mnist, sample_indices
from edgewise.eval.benchmark import AttackSpec, benchmark, cell_folder, summarize, write_report
from edgewise.eval.report import environment, write_text_atomic
from edgewise.models import list_models, load_model

ROOT = Path(__file__).parent
EDGEWISE = {
    "l2": ["ddn", "fmn-l2", "alma-l2", "cw-l2", "apgd_minimal-l2", "pgd_minimal-l2", "auto"],
    "l1": ["fmn-l1", "alma-l1", "apgd_minimal-l1", "pgd_minimal-l1", "auto"],
    "linf": ["fmn-linf", "apgd_minimal-linf", "pgd_minimal-linf", "auto"],
    "l0": ["sigma_zero", "auto"],
}


def held_out(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The last ``n`` test images that are not in the shipped sample (inputs, labels, test-set indices)."""
    inputs, labels = fashion_mnist("test")
    shipped = torch.zeros(len(labels), dtype=torch.bool)
    shipped[sample_indices()] = True
    indices = torch.arange(len(labels))[~shipped][-n:]
    return inputs[indices], labels[indices], indices


def finished(out: Path, model: str, specs: list[AttackSpec], *, steps: int, budget: int, n: int,
             batch_size: int) -> list[AttackSpec]:
    return [s for s in specs if any(cell_folder(out, model, s.name, s.steps_per_round(steps, budget), budget)
                                    .glob(f"result-*-n{n}-b{batch_size}.pt"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(list_models()), help="zoo models, comma-separated")
    parser.add_argument("--distance", default="l2", choices=sorted(EDGEWISE))
    parser.add_argument("--attacks", default=None, help="default: edgewise's and every installed baseline's")
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--name", default=None, help="default: DISTANCE-qBUDGET-nN")
    parser.add_argument("--finished-only", action="store_true", help="report the finished cells, run nothing")
    args = parser.parse_args()
    name = args.name or f"{args.distance}-q{args.budget}-n{args.n}"
    names = args.attacks.split(",") if args.attacks else EDGEWISE[args.distance]
    specs = attack_specs(names, distance=args.distance, baselines=args.attacks is None)
    inputs, labels, indices = held_out(args.n)
    zoo = list_models()
    models, data = {}, {}
    for model in args.models.split(","):
        models[model] = load_model(model)
        data[model] = (inputs.expand(-1, zoo[model]["in_channels"], -1, -1).contiguous(), labels)
    env = environment("cpu", 0)  # the commit of the code that runs: taken before, as HEAD may move during the run
    started = time.perf_counter()
    cells, steps = ROOT.parent / "runs" / f"attackbench-{name}", args.budget // 2
    chosen = {model: finished(cells, model, specs, steps=steps, budget=args.budget, n=args.n,
                              batch_size=args.batch_size) if args.finished_only else specs for model in models}
    parts = {model: benchmark({model: models[model]}, {model: data[model]}, chosen[model], [steps],
                              distance=args.distance, out=cells, budget=args.budget, batch_size=args.batch_size,
                              progress=True, log=lambda line: print(line, flush=True))
             for model in models if chosen[model]}
    report = {"distance": args.distance, "budget": args.budget, "paired": [],
              "models": {model: part["models"][model] for model, part in parts.items()},
              "summary": summarize({model: part["models"][model]["rows"] for model, part in parts.items()})}
    env["total_seconds"] = time.perf_counter() - started
    out = ROOT / "results" / f"attackbench-{name}"
    arguments = {**vars(args), "attacks": {model: [s.name for s in chosen[model]] for model in parts},
                 "data": "fmnist-test, held out",
                 "test_indices": [int(indices[0]), int(indices[-1])]}
    write_report(report, out, arguments=arguments, env=env)
    distances = {model: {label: [None if not torch.isfinite(d) else float(d) for d in values]
                         for label, values in entry["curves"].items()}
                 for model, entry in report["models"].items()}
    write_text_atomic(out / "distances.json", json.dumps({"test_indices": indices.tolist(),
                                                          "distances": distances}) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
