"""regbench entry point: `python train.py task=glue/sst2 regularizer=tlm` (Hydra overrides).

The same app as the installed `regbench train` (src/regbench/app.py), run from a checkout.
"""

from regbench.app import main

if __name__ == "__main__":
    main()
