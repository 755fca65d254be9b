"""Fixtures shared by the test modules."""

import pytest
import torch


@pytest.fixture(scope="module")
def single_thread():
    """Tiny tensors: intra-op threads only cost synchronisation. On a busy 2-core machine a 5-step
    recurrence took 44 ms with 2 threads and 0.5 ms with 1. Modules that run tiny ops use it with
    `pytestmark = pytest.mark.usefixtures("single_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
