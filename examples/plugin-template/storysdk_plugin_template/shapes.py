"""``template-shapes``: an image generator that draws simple seeded shapes for each scene.

It needs no model, yet it follows every rule a real generator follows:

- one :class:`storysdk.ImageAsset` per scene it is given, *yielded* as soon as it is drawn
  (the pipeline saves each one at once, so an interrupted run resumes where it stopped);
- every random choice comes from ``ctx.scene_seed(scene)``, so a scene's picture depends
  only on the story seed and the scene's index: it is the same whether the scene is drawn
  alone, in a batch, or after a resume;
- the picture size comes from the plan (``width``/``height`` of the story) unless the
  generator's own options override it;
- its options are declared in one place, the nested ``Options`` class (a pydantic model):
  name, type, default, bounds and a one-line description each. storysdk checks every value
  before the generator exists (``ShapesGenerator(shapes=0)`` raises a ``ConfigError`` naming
  the option and its bound) and ``storysdk plugins --options template-shapes`` prints them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import ClassVar

from PIL import Image, ImageDraw

import storysdk
from storysdk.model import Modality

__all__ = ["DEFAULT_SIZE", "ShapesGenerator"]

#: Picture size when neither the options nor the plan give one.
DEFAULT_SIZE = 64

Colour = tuple[int, int, int]


def _colour(rng: random.Random) -> Colour:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


class ShapesGenerator(storysdk.Generator):
    """Random ellipses, rectangles and triangles on a random background, one picture per scene.

    Characters present in a scene (``scene.characters``) stand in a row along the bottom of
    the picture as discs. A character's colour comes from the *story* seed and its name, not
    from the scene seed, so it is the same in every scene: a toy version of the character
    consistency that StoryDiffusion achieves with real models.

    The options are declared in :class:`Options` and read from ``self.options``.
    """

    # The registered name: what story files and Pipeline(...) use.
    name: ClassVar[str] = "template-shapes"
    description: ClassVar[str] = "seeded shapes per scene (example plugin)"
    # Capability flags (class attributes), listed by `storysdk plugins`.
    modality: ClassVar[Modality] = "image"
    batching: ClassVar[bool] = True  # the pipeline may pass all pending scenes in one call

    class Options(storysdk.Options):
        # Every option: a type, a default, bounds storysdk checks, and a one-line description.
        shapes: int = storysdk.Field(5, ge=1, description="how many shapes to draw per picture")
        width: int | None = storysdk.Field(
            None, ge=8, description="picture width in pixels; None: the plan's width, else 64"
        )
        height: int | None = storysdk.Field(
            None, ge=8, description="picture height in pixels; None: the plan's height, else 64"
        )

    options: Options  # the validated values, set by storysdk.Generator.__init__

    def generate(self, scenes: Sequence[storysdk.Scene], ctx: storysdk.RenderContext) -> Iterator[storysdk.ImageAsset]:
        """Yield one picture per scene, each seeded with ``ctx.scene_seed(scene)``."""
        width = self.options.width or ctx.plan.width or DEFAULT_SIZE
        height = self.options.height or ctx.plan.height or DEFAULT_SIZE
        for done, scene in enumerate(scenes, start=1):
            image = self._draw(scene, ctx, width, height)
            ctx.report(done, len(scenes), scene.index, "shapes drawn")  # optional step progress
            yield storysdk.ImageAsset(scene.index, image, made_by=self.name, metadata={"shapes": self.options.shapes})

    def character_colour(self, ctx: storysdk.RenderContext, name: str) -> Colour:
        """The colour of character ``name``: a function of the story seed and the name only."""
        return _colour(random.Random(storysdk.derive_seed(ctx.seed, "character", name)))

    def _draw(self, scene: storysdk.Scene, ctx: storysdk.RenderContext, width: int, height: int) -> Image.Image:
        rng = random.Random(ctx.scene_seed(scene))
        image = Image.new("RGB", (width, height), _colour(rng))
        draw = ImageDraw.Draw(image)
        for _ in range(self.options.shapes):
            x0, x1 = sorted(rng.randrange(width) for _ in range(2))
            y0, y1 = sorted(rng.randrange(height) for _ in range(2))
            kind = rng.choice(("ellipse", "rectangle", "triangle"))
            fill = _colour(rng)
            if kind == "ellipse":
                draw.ellipse((x0, y0, x1, y1), fill=fill)
            elif kind == "rectangle":
                draw.rectangle((x0, y0, x1, y1), fill=fill)
            else:
                draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) // 2, y0)], fill=fill)
        # Characters last, so they are never hidden: equal slots along the bottom edge.
        names = scene.characters
        if names:
            slot = width / len(names)
            radius = max(2, int(min(slot, height / 3) * 0.4))
            cy = height - radius - 1
            for i, char_name in enumerate(names):
                cx = int(slot * (i + 0.5))
                draw.ellipse(
                    (cx - radius, cy - radius, cx + radius, cy + radius),
                    fill=self.character_colour(ctx, char_name),
                )
        return image
