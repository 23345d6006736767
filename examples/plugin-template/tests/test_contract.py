"""The shared contract suite (storysdk.testing.contract) on the template's two components."""

from __future__ import annotations

import storysdk_plugin_template
from storysdk import StoryRequest
from storysdk.testing.contract import ComposerContract, GeneratorContract

REQUEST = StoryRequest(script="dawn\nnoon\ndusk", width=32, height=32, seed=11)


class TestShapesContract(GeneratorContract):
    plugins = (storysdk_plugin_template,)
    name = "template-shapes"
    options = {"shapes": 3}
    request = REQUEST
    bad_options = [({"shapes": 0}, "shapes"), ({"width": 4}, "width")]


class TestContactSheetContract(ComposerContract):
    plugins = (storysdk_plugin_template,)
    name = "template-contact-sheet"
    generators = ("template-shapes",)
    options = {"thumb": 16, "columns": 2}
    request = REQUEST
    bad_options = [({"columns": 0}, "columns"), ({"filename": "sheet.jpg"}, "filename")]
