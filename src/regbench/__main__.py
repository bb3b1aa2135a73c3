"""``python -m regbench``: the ``regbench`` command (see :mod:`regbench.console`)."""

import sys

from regbench.console import main

sys.exit(main())
