"""``python -m modalkit``: the ``modalkit`` command."""

import sys

from modalkit.cli import main

sys.exit(main())
