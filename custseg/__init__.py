"""custseg: nightly cross-channel customer segmentation (the shared plumbing package)."""

__version__ = "0.1.0"
