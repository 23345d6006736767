"""StoryDiffusion for storysdk: Consistent Self-Attention on SDXL (docs/storydiffusion.md §1).

Importing this package does not import torch. The pieces:

- :mod:`.state` and :mod:`.attention`: the per-run state and the CSA attention processor;
- :mod:`.patch`: installing it on an SDXL UNet;
- :mod:`.generator`: the ``storydiffusion`` image generator (registered by :mod:`.plugin`);
- :mod:`.hosted`: the hosted API's request format (``render(fields)``).
"""

from __future__ import annotations

__version__ = "0.1.0"
