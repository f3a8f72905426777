"""Training, checkpoints and run directories."""
from .engine import TrainResult, train

__all__ = ["TrainResult", "train"]
