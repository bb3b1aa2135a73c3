"""regbench: a Hydra-configured experiment framework for fine-tuning regularizers of Transformers."""

__version__ = "0.1.0"
