"""The open, reproducible OpenWebText pipeline: Reddit dumps -> links -> pages -> text -> corpus."""

__version__ = "0.1.0"
