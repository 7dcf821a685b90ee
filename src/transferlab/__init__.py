"""transferlab: re-testing what pretraining gives a vision model and what fine-tuning does to it."""

__version__ = "0.1.0"
