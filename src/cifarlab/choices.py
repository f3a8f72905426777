"""The named training settings: optimizers, learning-rate schedules and test-time augmentation, as
Registries with lazy "module:attribute" targets in cifarlab.training. (The fold models of `analyze
--label-check` point into cifarlab.analysis, a layer up: they are in analysis_choices.py.)

config.py reads their names to check a setting, the CLI offers them as --optimizer, --schedule and --tta
choices, and the training code looks an implementation up when it uses it. The targets put this module,
and config.py with it, in training's layer (tests/test_layers.py). This module imports no torch and nothing
of cifarlab but the registry: listing the names stays cheap.
"""
from __future__ import annotations

from .registry import Registry

# builder(model, cfg) -> torch.optim.Optimizer (training/optim.py)
OPTIMIZERS = Registry("optimizer", flag="--optimizer", package="cifarlab.training")
OPTIMIZERS.register("sgd", ".optim:build_sgd", description="SGD with momentum (Nesterov unless --no-nesterov)")
OPTIMIZERS.register("adam", ".optim:build_adam", description="Adam")
OPTIMIZERS.register("adamw", ".optim:build_adamw", description="AdamW (decoupled weight decay)")
OPTIMIZERS.register("muon", ".optim:build_muon",
                    description="Muon on the conv filters, Nesterov SGD on the rest (airbench; training/muon.py)")

# factor(p) -> the multiplier of the base learning rate at progress p in [0, 1], after warmup (training/optim.py)
SCHEDULES = Registry("schedule", flag="--schedule", package="cifarlab.training")
SCHEDULES.register("constant", ".optim:constant_schedule", description="the base learning rate throughout")
SCHEDULES.register("cosine", ".optim:cosine_schedule", description="half a cosine from the base rate to zero")
SCHEDULES.register("step", ".optim:step_schedule", description="divided by 10 at 50% and at 75% of training")
SCHEDULES.register("onecycle", ".optim:onecycle_schedule",
                   description="linearly up to the base rate at 25% of training, then linearly down to zero")
SCHEDULES.register("linear", ".optim:linear_schedule", description="straight down to zero (airbench)")

# views(logits, x) -> logits averaged over test-time views; logits(batch) is the model's fp32 logits
# (rundir/inference.py)
TTA = Registry("test-time augmentation", flag="--tta", package="cifarlab.rundir")
TTA.register("none", ".inference:tta_none", description="the image only")
TTA.register("flip", ".inference:tta_flip", description="the image and its mirror, averaged")
TTA.register("flip-translate", ".inference:tta_flip_translate",
             description="flip, plus the mirrored pairs shifted one pixel up-left and down-right (airbench)")
TTA.register("flip-translate-unsure", ".inference:tta_flip_translate_unsure",
             description="flip-translate for the fifth of the images the model is least sure of, the image "
                         "only for the rest: a third of the passes")
