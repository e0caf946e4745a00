"""The version of crossbench, written into every run record and study."""

__version__ = "0.1.0"
