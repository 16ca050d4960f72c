import os
from pathlib import Path

import pytest
import torch

from lenet1998.data import MNIST_FILES, load_mnist

REPO = Path(__file__).resolve().parent.parent
SHARED_SPEC = REPO.parent / "shared" / "paper"


def _data_dir():
    for candidate in (os.environ.get("LENET1998_DATA"), REPO.parent / "shared" / "data", REPO / "data"):
        if candidate and all((Path(candidate) / "MNIST" / "raw" / f).is_file() for f in MNIST_FILES):
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_dir():
    """The folder holding the real MNIST; CI points LENET1998_DATA at ../shared/data."""
    root = _data_dir()
    if root is None:
        pytest.skip("MNIST not found: set LENET1998_DATA")
    return root


@pytest.fixture(scope="session")
def mnist(data_dir):
    return load_mnist(data_dir, download=False)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)
