"""Shared fixtures; the helpers live in ``sd_helpers`` (this folder is put on ``sys.path``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from storysdk.tiny import tiny_sdxl_pipeline  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def one_thread() -> Any:
    """One torch thread for the whole session: on a shared 2-core machine, two threads contending
    with other processes made the tiny UNet ~50x slower in our measurements. Session-wide, so that
    class-scoped fixtures (the contract suite's reference run) render with the same thread count
    as the tests comparing against them: CPU matmuls split their sums by thread, so images made
    with another thread count may differ in the last bit. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_pipe() -> Any:
    """The tiny SDXL pipeline of ``storysdk.tiny`` (built once per session)."""
    return tiny_sdxl_pipeline(0)


@pytest.fixture(scope="session")
def tiny_unet(tiny_pipe: Any) -> Any:
    """The tiny SDXL UNet (three levels; self-attention at 1/32 and 1/16 of the image)."""
    return tiny_pipe.unet
