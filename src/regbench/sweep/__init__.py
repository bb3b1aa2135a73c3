"""The sweep layer: run a paper's table as a grid of Hydra multirun jobs, resume it, report it.

- :mod:`regbench.sweep.spec`: parse ``sweeps/<paper>_<table>.yaml`` and expand it into cells.
- :mod:`regbench.sweep.launch`: launch the pending cells as one Hydra multirun (any launcher);
  fingerprints tell current cells from stale ones.
- :mod:`regbench.sweep.data_root`: ``--data-root``: each task's local folder under one data root.
- :mod:`regbench.sweep.report`: aggregate the runs' ``metrics.json`` into Markdown/CSV/LaTeX + PNG.

Command line: ``python -m regbench.sweep {list,run,report} ...`` (see ``sweeps/README.md``).
"""

from regbench.sweep.spec import Cell, Sweep, SweepSpecError, load_sweep

__all__ = ["Cell", "Sweep", "SweepSpecError", "load_sweep"]
