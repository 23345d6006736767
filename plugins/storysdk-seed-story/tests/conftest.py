"""Shared tiny models (built once per session; tests never mutate them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from storysdk_seed_story.configs import TINY
from storysdk_seed_story.loading import tiny_mllm, tiny_vit


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tiny models are far faster on one thread when the 2 shared cores are busy (intra-op
    threads then wait on each other); restored after the session."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def vit():
    return tiny_vit(TINY, seed=0)


@pytest.fixture(scope="session")
def lm():
    return tiny_mllm(TINY, seed=0)


@pytest.fixture(scope="session")
def start_image() -> Image.Image:
    rng = np.random.RandomState(0)
    return Image.fromarray((rng.rand(96, 128, 3) * 255).astype("uint8"), "RGB")
