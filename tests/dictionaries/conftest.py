import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """These tests use tiny matrices, where a second intra-op thread only adds synchronisation
    (and, on a shared 2-core machine, can make a test 20x slower); restore afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
