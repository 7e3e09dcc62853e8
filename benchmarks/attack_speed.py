"""Attack time over the floor of an N-step gradient attack: N × (forward + backward) of the model, same run.

    python benchmarks/attack_speed.py [--batch-size 256] [--steps 100] [--repeats 3] [--attacks ddn,alma-l2]

For each attack, the floor (N forward passes and N input-gradient backward passes on the batch) and the attack are
timed alternately ``repeats`` times and the median of the per-repeat ratios is reported (robust to a busy CPU).
Writes benchmarks/results/attack_speed.{md,json}. DESIGN.md target: ratio <= 1.15.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from edgewise.attacks import ATTACKS
from edgewise.data import sample
from edgewise.models import load_model

RESULTS = Path(__file__).parent / "results"
SPECS: dict[str, tuple[str, dict[str, object]]] = {
    "ddn": ("ddn", {}),
    "alma-l2": ("alma", {"distance": "l2"}),
}


def floor(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, steps: int) -> float:
    """Seconds for ``steps`` forward + input-gradient backward passes, the least any N-step attack needs."""
    started = time.perf_counter()
    for _ in range(steps):
        x = inputs.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(x), labels, reduction="sum")
        torch.autograd.grad(loss, x)
    return time.perf_counter() - started


def timed(attack: Callable[..., torch.Tensor], model: torch.nn.Module, inputs: torch.Tensor,
          labels: torch.Tensor) -> float:
    started = time.perf_counter()
    attack(model, inputs, labels)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--attacks", default="ddn,alma-l2")
    args = parser.parse_args()
    model = load_model("smallcnn-fmnist")
    inputs, labels = sample()
    inputs, labels = inputs[: args.batch_size], labels[: args.batch_size]
    rows = []
    for name in args.attacks.split(","):
        function_name, options = SPECS[name]
        if function_name not in ATTACKS:
            print(f"{name}: skipped, attack {function_name!r} is not in edgewise.attacks.ATTACKS")
            continue
        attack = functools.partial(ATTACKS[function_name], steps=args.steps, **options)
        floor(model, inputs, labels, 2)  # warm-up
        ratios, attack_times, floor_times = [], [], []
        for _ in range(args.repeats):
            floor_times.append(floor(model, inputs, labels, args.steps))
            attack_times.append(timed(attack, model, inputs, labels))
            ratios.append(attack_times[-1] / floor_times[-1])
        rows.append({"attack": name, "batch_size": args.batch_size, "steps": args.steps,
                     "floor_seconds": statistics.median(floor_times),
                     "attack_seconds": statistics.median(attack_times), "ratio": statistics.median(ratios),
                     "ratios": ratios, "threads": torch.get_num_threads()})
        print(f"{name}: attack {rows[-1]['attack_seconds']:.2f} s, floor {rows[-1]['floor_seconds']:.2f} s, "
              f"ratio {rows[-1]['ratio']:.3f} (target <= 1.15)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "attack_speed.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["| attack | batch | steps | attack (s) | N×(fwd+bwd) (s) | ratio |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['attack']} | {r['batch_size']} | {r['steps']} | {r['attack_seconds']:.2f} | "
              f"{r['floor_seconds']:.2f} | {r['ratio']:.3f} |" for r in rows]
    (RESULTS / "attack_speed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
