"""Training, checkpoints and run directories."""
from .engine import TrainResult, train
from .loop import train_one_epoch, train_step
from .lr_find import LrFindResult, lr_find

__all__ = ["LrFindResult", "TrainResult", "lr_find", "train", "train_one_epoch", "train_step"]
