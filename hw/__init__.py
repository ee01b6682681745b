"""Amaranth HDL generators of the training accelerator's blocks, and the build CLI (``python -m hw.build``)."""

__version__ = "0.1.0"
