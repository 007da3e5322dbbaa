"""``python -m modalkit_config``: the same as the ``modalkit-config`` command."""

import sys

from modalkit_config.cli import main

sys.exit(main())
