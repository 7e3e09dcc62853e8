"""edgewise ALMA vs adv-lib 0.2.8 ALMA sample by sample: is a difference of medians systematic or scatter?

    python benchmarks/alma_per_sample.py [--distance l1] [--steps 1000] [--n 96]

Both attacks run with the same settings (α for the step count, ε per distance, P2) on the first n correctly
classified images of the shipped sample; for each image the ratio of the two distances (edgewise / adv-lib,
failures as +inf) is printed with the fraction of images where edgewise is smaller and the two medians.
"""

from __future__ import annotations

import argparse

import torch

from edgewise.attacks import alma
from edgewise.attacks.alma import INIT_DISTANCE, default_alpha
from edgewise.data import sample
from edgewise.distances import get as get_distance
from edgewise.losses import is_adversarial
from edgewise.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--distance", default="l1", choices=("l1", "l2"))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--model", default="smallcnn-fmnist")
    args = parser.parse_args()
    from adv_lib.attacks import alma as reference_alma

    model = load_model(args.model)
    inputs, labels = sample()
    with torch.no_grad():
        correct = model(inputs).argmax(1) == labels
    inputs, labels = inputs[correct][: args.n], labels[correct][: args.n]
    alpha, eps = default_alpha(args.steps), INIT_DISTANCE[args.distance]
    distance = get_distance(args.distance)(inputs)

    def measured(adv: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            found = is_adversarial(model(adv), labels)
        return torch.where(found, distance(adv), torch.full_like(found, float("inf"), dtype=adv.dtype))

    ours = measured(alma(model, inputs, labels, distance=args.distance, steps=args.steps, alpha=alpha,
                         init_distance=eps))
    theirs = measured(reference_alma(model, inputs, labels, distance=args.distance, num_steps=args.steps, α=alpha,
                                     init_lr_distance=eps))
    ratio = ours / theirs
    smaller = 100 * float((ours < theirs).double().mean())
    print(f"{args.distance}, {args.steps} steps, n={len(inputs)}: median edgewise {float(ours.median()):.4f}, "
          f"adv-lib {float(theirs.median()):.4f}; edgewise smaller on {smaller:.1f}% of the images, "
          f"mean ratio {float(ratio.mean()):.4f}, ratio range [{float(ratio.min()):.3f}, {float(ratio.max()):.3f}]")


if __name__ == "__main__":
    main()
