"""Experiments made of many training runs: `compare` (models side by side), `ablate` (one setting varied)
and the grid they share."""
from .ablate import ablate
from .compare import compare

__all__ = ["ablate", "compare"]
