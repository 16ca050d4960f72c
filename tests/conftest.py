import os
from pathlib import Path

import pytest
import torch

from lenet1998.data import MNIST_FILES, load_mnist

REPO = Path(__file__).resolve().parent.parent
SHARED_SPEC = REPO.parent / "shared" / "paper"


def _holds_mnist(folder) -> bool:
    return all((Path(folder) / "MNIST" / "raw" / f).is_file() for f in MNIST_FILES)


def _data_dir():
    named = os.environ.get("LENET1998_DATA")
    if named:  # a folder the user named is the one: no silent fallback to another
        return Path(named) if _holds_mnist(named) else None
    for candidate in (REPO.parent / "shared" / "data", REPO / "data"):
        if _holds_mnist(candidate):
            return candidate
    return None


def _must_have_data() -> bool:
    """Under CI (CI=true, as CI services and .ci/run set it) a missing MNIST fails the run."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def data_dir():
    """The folder holding the real MNIST; CI points LENET1998_DATA at ../shared/data. Missing:
    the MNIST tests skip on a developer's machine, and fail under CI."""
    root = _data_dir()
    if root is None:
        where = f"LENET1998_DATA={os.environ['LENET1998_DATA']} holds no MNIST/raw/" if os.environ.get("LENET1998_DATA") \
            else "MNIST not found: set LENET1998_DATA"
        if _must_have_data():
            pytest.fail(f"{where} (CI needs MNIST: no test may skip for want of it)", pytrace=False)
        pytest.skip(where)
    return root


@pytest.fixture(scope="session")
def mnist(data_dir):
    return load_mnist(data_dir, download=False)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)
