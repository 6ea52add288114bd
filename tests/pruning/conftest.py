"""Pruning tests run single-threaded: the models are tiny, and on a shared 2-core machine OpenMP
threads spinning against other jobs made tiny ops 10-100x slower."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
