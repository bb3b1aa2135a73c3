"""regbench: a Hydra-configured experiment framework for fine-tuning regularizers of Transformers."""

__version__ = "0.1.0"

from regbench.config import register_resolvers  # noqa: E402  (conf/ interpolates ${combination:...})

register_resolvers()
