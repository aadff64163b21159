import os

import torch

# Tests run on CPU with a fixed thread count so timings and numerics are stable across machines.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
