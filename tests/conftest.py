import os

import pytest
import torch

# Tests run on CPU with a fixed thread count so timings and numerics are stable across machines.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Point the harness at the shared data beside the checkout unless the caller chose otherwise.
from tests.helpers import SHARED_TRUTHFULQA

os.environ.setdefault("TRUTHSTEER_HUMAN_LABELS", str(SHARED_TRUTHFULQA))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """A tiny random Llama (tests.helpers.tiny_llama) saved as an HF folder, for commands that
    load a model by path. Shared by the whole session: tests only read it."""
    from tests.helpers import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def tiny_model():
    """A tiny random Llama loaded in memory (one per test module: hooks are module-local)."""
    from tests.helpers import tiny_llama

    return tiny_llama()
