"""Training, checkpoints and run directories."""
from .engine import TrainResult, train
from .lr_find import LrFindResult, lr_find

__all__ = ["LrFindResult", "TrainResult", "lr_find", "train"]
