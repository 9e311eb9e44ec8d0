"""Test configuration: strict mode for the whole suite (an unknown op raises instead of being
treated conservatively), few threads (CI has 2 cores), quiet third-party warnings."""

import os
import warnings

os.environ["WDAUDIT_STRICT"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

# CI has 2 cores; a developer running beside other jobs sets OMP_NUM_THREADS=1 (oversubscribed
# OpenMP threads spin and slow everything by an order of magnitude)
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(2)
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning, module="torch")

import pytest  # noqa: E402

from tests.support.untraceable import beyond_make_fx as _beyond  # noqa: E402


@pytest.fixture
def beyond_make_fx(monkeypatch):
    """The model's forward defeats make_fx as well (tests/support/untraceable.py)."""
    _beyond(monkeypatch)
