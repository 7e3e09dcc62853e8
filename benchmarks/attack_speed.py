"""Attack time over the floor of an N-step gradient attack: N × (forward + backward) of the model, same run.

    python benchmarks/attack_speed.py [--batch-size 256] [--steps 100] [--repeats 5] [--attacks ddn,alma-l2,fmn-l2]
                                       [--name attack_speed] [--model SPEC --weights W --mean M --std S --data SPEC]

``--attacks`` also takes other libraries' attacks by their benchmark name (``adv-lib:ddn``, ``adv-lib:alma-l2``),
measured the same way, for a per-step comparison in one run.

Each round times the floor (N forward passes and N input-gradient backward passes on the batch) and then every
attack once, interleaved, so that drifts of the machine's speed hit all of them alike; the median over ``repeats``
rounds of the per-round ratio attack / floor is reported, and, per attack, the median per-round time ratio to the
first attack of ``--attacks`` (the direct per-step comparison: < 1 is faster). Both wall time and the process's
CPU time are measured: on a machine shared with other work the CPU-time ratio is the meaningful one (wall time
then also counts the other processes' share of the cores).
Writes benchmarks/results/NAME.{md,json} (``--name``, default attack_speed). DESIGN.md target: ratio <= 1.15.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from edgewise import data, models
from edgewise.cli import csv
from edgewise.eval.baselines import MissingLibraryError, load_baseline
from edgewise.eval.benchmark import edgewise_attack
from edgewise.models import CountingModel

RESULTS = Path(__file__).parent / "results"


def floor_work(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, steps: int) -> None:
    """``steps`` forward + input-gradient backward passes: the least any N-step gradient attack needs."""
    for _ in range(steps):
        x = inputs.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(x), labels, reduction="sum")
        torch.autograd.grad(loss, x)


def timed(work: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) spent in ``work()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--attacks", default="ddn,alma-l2")
    parser.add_argument("--name", default="attack_speed", help="results file name")
    parser.add_argument("--model", default="smallcnn-fmnist", help="model spec (docs/own-model.md)")
    parser.add_argument("--weights", default=None, help="state dict or checkpoint of --model")
    parser.add_argument("--model-args", default=None, help="JSON object of --model's keyword arguments")
    parser.add_argument("--num-classes", type=int, default=None)
    parser.add_argument("--mean", type=csv(float), default=None, help="per-channel mean put inside the model")
    parser.add_argument("--std", type=csv(float), default=None, help="per-channel std put inside the model")
    parser.add_argument("--data", default="sample", help="data spec (docs/own-model.md); the first --batch-size")
    args = parser.parse_args()
    model = models.load(args.model, weights=args.weights, model_args=args.model_args,
                        num_classes=args.num_classes, mean=args.mean, std=args.std)
    dataset = data.load(args.data)
    data.check_compatible(model, dataset)
    inputs, labels = data.stack(dataset, data.select(dataset, n=min(args.batch_size, len(dataset))))
    attacks: dict[str, Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], object]] = {}
    for name in args.attacks.split(","):
        if ":" in name:  # another library's attack, through edgewise's adapter (edgewise.eval.baselines)
            try:
                attacks[name] = load_baseline(name, steps=args.steps)
            except MissingLibraryError as error:
                print(f"{name}: skipped, {error}")
        else:  # "ddn", "alma-l2", "fmn-l1": the benchmark's names, the suffix bound to the attack's distance
            attacks[name] = edgewise_attack(name, distance=name.partition("-")[2] or "l2").build(args.steps)
    if not attacks:
        parser.error(f"none of --attacks {args.attacks!r} can run here")
    floor_work(model, inputs, labels, 2)  # warm-up
    floors: list[tuple[float, float]] = []
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in attacks}
    for _ in range(args.repeats):
        floors.append(timed(lambda: floor_work(model, inputs, labels, args.steps)))
        for name, attack in attacks.items():
            times[name].append(timed(lambda: attack(model, inputs, labels)))  # noqa: B023
    first = next(iter(attacks))
    rows = []
    for name, attack in attacks.items():
        counting = CountingModel(model)  # the budget, counted in the same run: ALMA's step-size search is
        attack(counting, inputs, labels)  # model-free (distance only), so it adds no forward or backward
        wall = [a[0] / f[0] for a, f in zip(times[name], floors, strict=True)]
        cpu = [a[1] / f[1] for a, f in zip(times[name], floors, strict=True)]
        relative = [a[1] / b[1] for a, b in zip(times[name], times[first], strict=True)]
        rows.append({"attack": name, "model": models.identity(args.model, weights=args.weights,
                                                              model_args=args.model_args,
                                                              num_classes=args.num_classes, mean=args.mean,
                                                              std=args.std),
                     "data": args.data, "batch_size": len(inputs), "steps": args.steps,
                     "floor_seconds": statistics.median(f[0] for f in floors),
                     "attack_seconds": statistics.median(a[0] for a in times[name]),
                     "ratio_wall": statistics.median(wall), "ratio_cpu": statistics.median(cpu),
                     "cpu_relative_to": first, "cpu_relative": statistics.median(relative),
                     "forwards_per_sample": counting.forwards / len(inputs),
                     "backwards_per_sample": counting.backwards / len(inputs),
                     "ratios_wall": wall, "ratios_cpu": cpu, "cpu_relatives": relative,
                     "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0]})
        print(f"{name}: attack {rows[-1]['attack_seconds']:.2f} s, floor {rows[-1]['floor_seconds']:.2f} s, "
              f"ratio wall {rows[-1]['ratio_wall']:.3f}, CPU {rows[-1]['ratio_cpu']:.3f} (target <= 1.15), "
              f"CPU time / {first}'s {rows[-1]['cpu_relative']:.3f}; forwards/backwards per sample "
              f"{rows[-1]['forwards_per_sample']:.0f}/{rows[-1]['backwards_per_sample']:.0f}; "
              f"load average {rows[-1]['load_average']:.1f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["| attack | batch | steps | fwd / bwd per sample | attack (s) | N×(fwd+bwd) (s) | ratio (wall) | "
             f"ratio (CPU) | CPU time / {first}'s | load |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['attack']} | {r['batch_size']} | {r['steps']} | "
              f"{r['forwards_per_sample']:.0f} / {r['backwards_per_sample']:.0f} | {r['attack_seconds']:.2f} | "
              f"{r['floor_seconds']:.2f} | {r['ratio_wall']:.3f} | {r['ratio_cpu']:.3f} | {r['cpu_relative']:.3f} | "
              f"{r['load_average']:.1f} |"
              for r in rows]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
