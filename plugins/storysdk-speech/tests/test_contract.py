"""storysdk's shared component contract (storysdk.testing.contract) on the piper generator."""

from __future__ import annotations

from storysdk.model import Scene, StoryPlan
from storysdk.testing.contract import GeneratorContract
from storysdk_speech import plugin


class TestPiperContract(GeneratorContract):
    plugins = (plugin,)
    name = "piper"
    options = {"sentence_silence": 0.1}
    bad_options = [
        ({"sentence_silence": -1.0}, "sentence_silence"),
        ({"length_scale": 0.0}, "length_scale"),
        ({"speaker": 3}, "out of range"),
        ({"voice": "/no/such/voice.onnx"}, "does not exist"),
    ]
    bad_plans = []
