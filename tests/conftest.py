import os

import torch

# Tests run on CPU with a fixed thread count so timings and numerics are stable across machines.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Point the harness at the shared data beside the checkout unless the caller chose otherwise.
from tests.helpers import SHARED_TRUTHFULQA

os.environ.setdefault("TRUTHSTEER_HUMAN_LABELS", str(SHARED_TRUTHFULQA))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
