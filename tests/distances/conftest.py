"""Run the distance tests on one intra-op thread: their tensors are tiny, and on the shared, overloaded CPU of the
project machine two spinning threads make a small float64 conv2d about 1000x slower (70 ms instead of 20 µs)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
