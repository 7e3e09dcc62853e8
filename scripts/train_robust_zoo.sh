#!/usr/bin/env bash
# The commands that trained the robust models of the zoo (issue: robust training), two queues run side by side on
# the 2-core development machine, one thread each. Every run fine-tunes the standard smallcnn-fmnist model
# (--init), as the DDN paper does on CIFAR-10 (clean training first, then adversarial training), and uses fewer
# attack steps and epochs than the papers (DDN: 100 steps, 50 epochs; MSD/AMPGD: 15 epochs): the 2-core budget.
# Each run writes runs/NAME/{checkpoint.pt,metrics.json,NAME.pt,NAME.json}; copy NAME.pt/NAME.json into
# src/edgewise/models/weights/. A run restarted with the same command resumes from its last finished epoch.
set -euo pipefail
cd "$(dirname "$0")/.."
EW=".venv/bin/edgewise"
export OMP_NUM_THREADS=1
queue_a() {
  $EW train --recipe pgd --model smallcnn --init smallcnn-fmnist --epochs 2 --lr 0.01 --lr-milestones 1 \
    --recipe-options '{"eps": 0.1, "steps": 7}' --name smallcnn-pgd-fmnist --out runs/smallcnn-pgd-fmnist
  $EW train --recipe ddn --model smallcnn --init smallcnn-fmnist --epochs 2 --lr 0.01 --lr-milestones 1 \
    --train-samples 15000 --recipe-options '{"eps": 1.5, "steps": 20}' \
    --name smallcnn-ddn-fmnist --out runs/smallcnn-ddn-fmnist
}
queue_b() {
  for recipe in ampgd max avg msd; do
    $EW train --recipe "$recipe" --model smallcnn --init smallcnn-fmnist --epochs 1 --lr 0.01 \
      --train-samples 20000 --recipe-options '{"norms": ["linf", "l2", "l1"], "eps": [0.1, 1.5, 10.0], "steps": 5}' \
      --name "smallcnn-$recipe-fmnist" --out "runs/smallcnn-$recipe-fmnist"
  done
}
case "${1:-all}" in
  a) queue_a ;;
  b) queue_b ;;
  all) queue_a & queue_b & wait ;;
esac
