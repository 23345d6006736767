"""Shared tiny fixtures. Torch runs single-threaded here (restored afterwards): on a loaded
2-core machine, two threads make these toy-sized ops many times slower."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tok():
    from storysdk_audiostory.qwen_tokenizer import tiny_qwen_tokenizer

    return tiny_qwen_tokenizer()


@pytest.fixture(scope="session")
def special(tok):
    from storysdk_audiostory.grammar import SpecialIds

    return SpecialIds.from_tokenizer(tok)


@pytest.fixture(scope="session")
def planner_rt():
    from storysdk_audiostory.loading import load_planner_runtime

    return load_planner_runtime(preset="tiny", checkpoint=None, base_llm=None, device="cpu", dtype="float32", weights_seed=0)


@pytest.fixture(scope="session")
def audio_rt():
    from storysdk_audiostory.loading import load_audio_runtime

    return load_audio_runtime(preset="tiny", checkpoint=None, vae=None, text_encoder=None, device="cpu",
                              dtype="float32", weights_seed=0, component="generator 'test'")
