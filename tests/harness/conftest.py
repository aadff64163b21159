import pytest
import torch

from harness.config import ModelConfig
from harness.models import load_model
from tests.helpers import TINY_ARCHITECTURES, tiny_model_folder


@pytest.fixture(scope="module", params=TINY_ARCHITECTURES)
def tiny_arch_model(request, tmp_path_factory):
    """The embedded-model wrapper around a tiny random model of each tested architecture (fp32,
    one thread, so shapes and not thread splits decide the rounding)."""
    torch.set_num_threads(1)
    folder = tiny_model_folder(request.param, tmp_path_factory.mktemp(request.param))
    return load_model(ModelConfig(str(folder), device="cpu", dtype="float32"))
