"""Run the distance tests on one intra-op thread: their tensors are tiny, and on the shared, overloaded CPU of the
project machine two spinning threads make a small float64 conv2d about 1000x slower (70 ms instead of 20 µs)."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    yield
