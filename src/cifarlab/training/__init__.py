"""Training: train() (engine.py), its step and epoch loop, the optimizers and the LR finder. The run directory
it writes, and the Run that opens it, are cifarlab.rundir, a layer below."""
from .engine import TrainResult, train
from .loop import train_one_epoch, train_step
from .lr_find import LrFindResult, lr_find

__all__ = ["LrFindResult", "TrainResult", "lr_find", "train", "train_one_epoch", "train_step"]
