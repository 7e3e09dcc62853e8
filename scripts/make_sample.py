"""Build the shipped sample: the first 100 images of each class of the Fashion-MNIST test set, in test order.

Run once (needs `apt-get install dataset-fashion-mnist`): python scripts/make_sample.py
"""

import json
from pathlib import Path

import torch

from edgewise.data.fashion_mnist import DEBIAN_ROOT
from edgewise.data.idx import read_idx, write_idx

PER_CLASS = 100
OUT = Path(__file__).resolve().parents[1] / "src" / "edgewise" / "data" / "files"

images = read_idx(DEBIAN_ROOT / "t10k-images-idx3-ubyte.gz", ndim=3)
labels = read_idx(DEBIAN_ROOT / "t10k-labels-idx1-ubyte.gz", ndim=1)
chosen = sorted(i for c in range(10) for i in torch.nonzero(labels == c).flatten()[:PER_CLASS].tolist())
index = torch.tensor(chosen)
OUT.mkdir(parents=True, exist_ok=True)
write_idx(OUT / "sample-images-idx3-ubyte.gz", images[index])
write_idx(OUT / "sample-labels-idx1-ubyte.gz", labels[index])
(OUT / "sample-indices.json").write_text(json.dumps({
    "source": "Fashion-MNIST test set (t10k), Debian package dataset-fashion-mnist",
    "rule": f"first {PER_CLASS} images of each class, in test-set order",
    "test_indices": chosen,
}) + "\n")
print(f"wrote {len(chosen)} images to {OUT}")
