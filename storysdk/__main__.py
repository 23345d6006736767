"""``python -m storysdk`` is the ``storysdk`` command."""

import sys

from .cli import main

sys.exit(main())
