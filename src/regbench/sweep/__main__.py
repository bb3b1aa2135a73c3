"""``python -m regbench.sweep``: see :mod:`regbench.sweep.cli`."""

import sys

from regbench.sweep.cli import main

sys.exit(main())
