"""Experiments made of many training runs: `compare` (models side by side) and the grid they share."""
from .compare import compare

__all__ = ["compare"]
