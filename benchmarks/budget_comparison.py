"""edgewise's APGD and σ-zero against independent implementations, at the same query budget per sample.

    OMP_NUM_THREADS=1 python benchmarks/budget_comparison.py --pair apgd-linf [--budget 400] [--n 500]
                                                            [--model smallcnn-fmnist] [--batch-size 100]

Pairs (the reference implementation second):

- ``apgd-linf``, ``apgd-l2``, ``apgd-l1``: edgewise's ``apgd_minimal`` (APGD-CE inside the ε search of
  ``attacks.minimal``, R rounds of S steps) against attackbenchlib 2.0.2's original APGD (the authors' code)
  inside attackbenchlib's own minimal wrapper (``get_original_apgd_minimal``: doubling, then bisection), with the
  same R, S − 1 steps per round (its rounds cost one more forward and backward, plus a check forward) and the same
  first ε;
- ``sigma_zero``: edgewise's ``sigma_zero`` against adv-lib 0.2.8's ``sigma_zero``, Q/2 steps each.

Both get Q forward + backward passes per sample (counted by ``models.CountingModel``; the attackbench wrapper
makes 2 more per round, in its favour); a sample's distance is that of the returned point, re-verified
(misclassified, else inf). Not behind ``models.BudgetModel``: AttackBench's wrapper, which it reproduces, clamps
queries to [0, 1] with ``torch.clamp``, whose gradient is 0 at exactly 0 and 1, so an attack that starts at
δ = 0 (edgewise's) never moves the black background pixels of Fashion-MNIST, while one with a random start
(attackbench's APGD) does; that would compare the starting points, not the attacks. Images: the first n correctly
classified Fashion-MNIST test images outside the shipped sample (``alma_rmsprop_sweep.held_out``). Reported: the
paired per-image ratio edgewise / reference (``eval.metrics.paired_ratio``; "no weaker": geometric mean ≤ 1.01 and
lower end ≤ 1), medians and success. Writes benchmarks/results/budget_comparison_PAIR_qQ[_MODEL][_nN].{md,json}
(MODEL and N where not the defaults); finished batches are kept with edgewise's source digest, and a rerun resumes
only from batches of the same source and setting.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from alma_rmsprop_sweep import held_out
from edgewise.attacks import ATTACKS, sigma_zero
from edgewise.attacks.pgd import DEFAULT_EPS
from edgewise.distances import get as get_distance
from edgewise.eval.metrics import format_ratio, paired_ratio
from edgewise.eval.provenance import edgewise_identity
from edgewise.models import load_model
from edgewise.models.wrappers import CountingModel

RESULTS = Path(__file__).parent / "results"
ROUNDS = 10
PAIRS = ("apgd-linf", "apgd-l2", "apgd-l1", "sigma_zero")


def attacks(pair: str, budget: int) -> tuple[str, dict[str, Callable[..., torch.Tensor]]]:
    """(norm, {name: attack}) of a pair at Q = ``budget`` passes per sample."""
    steps = budget // 2
    if pair == "sigma_zero":
        from adv_lib.attacks import sigma_zero as adv_lib_sigma_zero

        return "l0", {"edgewise": functools.partial(sigma_zero, steps=steps),
                      "adv-lib": functools.partial(adv_lib_sigma_zero, num_steps=steps)}
    from attackbench.attacks.original.configs import get_original_apgd_minimal

    norm = pair.split("-")[1]
    per_round = steps // ROUNDS
    theirs = get_original_apgd_minimal(threat_model=norm, num_steps=per_round - 1, num_restarts=1, loss="ce",
                                       rho=0.75, use_largereps=False, init_eps=DEFAULT_EPS[norm],
                                       search_steps=ROUNDS)
    ours = functools.partial(ATTACKS["apgd_minimal"], norm=norm, steps=per_round, binary_search_steps=ROUNDS)
    return norm, {"edgewise": ours, "attackbench": theirs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", choices=PAIRS, required=True)
    parser.add_argument("--budget", type=int, default=400, help="Q, forward + backward passes per sample")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--model", default="smallcnn-fmnist")
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()
    norm, runs = attacks(args.pair, args.budget)
    model = load_model(args.model)
    inputs, labels = held_out(model, args.n)
    RESULTS.mkdir(exist_ok=True)
    name = f"budget_comparison_{args.pair}_q{args.budget}"
    name += (f"_{args.model}" if args.model != parser.get_default("model") else "") + (
        f"_n{args.n}" if args.n != parser.get_default("n") else "")
    path = RESULTS / f"{name}.json"
    setting = {"pair": args.pair, "budget": args.budget, "n": args.n, "model": args.model,
               "batch_size": args.batch_size, "rounds": ROUNDS, "edgewise": edgewise_identity()}
    record = json.loads(path.read_text()) if path.is_file() else {"setting": setting, "batches": {}}
    if record["setting"] != setting:
        raise SystemExit(f"{path} was written with {record['setting']}, this run has {setting}")
    starts = range(0, args.n, args.batch_size)
    for start in tqdm(starts, desc=name):
        for label, attack in runs.items():
            key = f"{label}/{start}"
            if key in record["batches"]:
                continue
            x, y = inputs[start:start + args.batch_size], labels[start:start + args.batch_size]
            counting = CountingModel(model)
            torch.manual_seed(0)  # adv-lib's and attackbench's random starts draw from the global RNG
            adv = attack(counting, x, y).detach()
            with torch.no_grad():
                fooled = model(adv).argmax(1) != y
            distance = torch.where(fooled, get_distance(norm)(x)(adv), torch.inf)
            record["batches"][key] = {"distances": distance.tolist(),
                                      "max_spent": (counting.forwards + counting.backwards) // len(x)}
            path.write_text(json.dumps(record))
    distances = {label: torch.tensor([d for start in starts for d in record["batches"][f"{label}/{start}"]
                                      ["distances"]]) for label in runs}
    ours, theirs = distances.values()
    ratio = paired_ratio(ours, theirs)
    record["summary"] = {label: {"success": float(torch.isfinite(d).double().mean()),
                                 "median": float(d.median()), "max_spent": max(
                                     record["batches"][f"{label}/{s}"]["max_spent"] for s in starts)}
                         for label, d in distances.items()}
    record["paired_ratio"] = ratio
    path.write_text(json.dumps(record))
    reference = list(runs)[1]
    lines = [f"# {args.pair}: edgewise vs {reference} at Q = {args.budget} passes per sample", "",
             f"{args.model}, n = {args.n} held-out Fashion-MNIST test images, {norm}.", "",
             "| attack | success | median | passes per sample |", "|---|---|---|---|"]
    lines += [f"| {label} | {s['success']:.3f} | {s['median']:.4g} | {s['max_spent']} |"
              for label, s in record["summary"].items()]
    if ratio is not None:
        verdict = ratio["geometric_mean_ratio"] <= 1.01 and ratio["ci95_low"] <= 1
        lines += ["", f"Paired ratio edgewise / {reference} over {ratio['pairs']} images: geometric mean "
                  f"{format_ratio(ratio)}, "
                  f"smaller on {ratio['smaller']:.1%}, larger on {ratio['larger']:.1%}: "
                  f"{'no weaker' if verdict else 'WEAKER'}."]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
