"""Run under ``torchrun``: train a few steps (0: the whole epoch) with the shared loop and save the weights
(tests/training/test_loop.py)."""

import sys

import torch
import torch.distributed as dist

from edgewise.training import TrainConfig, train


def synthetic(seed: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 1, 28, 28, generator=generator), torch.randint(0, 10, (count,), generator=generator)


def run(out: str, *, steps: int | None, batch_size: int) -> torch.nn.Module:
    config = TrainConfig(architecture="lenet", epochs=1, batch_size=batch_size, lr=0.05, seed=3)
    return train(config, synthetic(0, 256), synthetic(1, 64), out=out, name="ddp", max_steps=steps, progress=False)


if __name__ == "__main__":
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    model = run(sys.argv[1], steps=int(sys.argv[2]) or None, batch_size=int(sys.argv[3]))  # 0: the whole epoch
    if dist.get_rank() == 0:
        torch.save(model.state_dict(), f"{sys.argv[1]}/weights.pt")
    dist.destroy_process_group()
