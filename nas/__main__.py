"""``python -m nas``: the ``nas`` command, where the console script is not on PATH."""

import sys

from nas.cli import main

sys.exit(main())
