"""The named training settings implemented above config.py: optimizers, learning-rate schedules and
test-time augmentation, as Registries with lazy "module:attribute" targets in cifarlab.training; and the
fold models of `analyze --label-check` (targets in cifarlab.analysis).

config.py (a leaf) reads their names to check a setting, the CLI offers them as --optimizer, --schedule and
--tta choices, and the training code looks an implementation up when it uses it. This module imports no
torch and nothing of cifarlab above the registry: listing the names stays cheap.
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
# (training/inference.py)
TTA = Registry("test-time augmentation", flag="--tta", package="cifarlab.training")
TTA.register("none", ".inference:tta_none", description="the image only")
TTA.register("flip", ".inference:tta_flip", description="the image and its mirror, averaged")
TTA.register("flip-translate", ".inference:tta_flip_translate",
             description="flip, plus the mirrored pairs shifted one pixel up-left and down-right (airbench)")
TTA.register("flip-translate-unsure", ".inference:tta_flip_translate_unsure",
             description="flip-translate for the fifth of the images the model is least sure of, the image "
                         "only for the rest: a third of the passes")

# probabilities(train_set, run_cfg, options, device, precision, log) -> (out-of-fold probabilities, facts)
# (analysis/label_issues.py). Each entry's defaults: `folds` (K); `epochs` per fold model (run: at most this
# many, fewer when the run had fewer); `input_size` of the features model: 128 px, the linear probe's measured
# sweet spot on a CPU (BENCHMARKS.md: logistic regression 0.81 test accuracy from 5,000 labels at 128 px, 0.78 at
# 96 px, at 1.6x the extraction cost), and the features are cached after the first check; `c_images`: the
# logistic regression's C is c_images / training images per fold, a fixed total L2 strength: a strongly regularized
# model gives the calibrated, less confident probabilities confident learning needs (10,000 images, 10% uniform
# noise, 128 px: C = 0.625 flagged 3,466 at precision 0.27; C = 5/8,000 flagged 1,156 at 0.73, recall 0.84).
LABEL_CHECK_MODELS = Registry("label-check fold model", flag="--label-check-model", package="cifarlab.analysis")
LABEL_CHECK_MODELS.register("features", ".label_issues:features_probabilities", folds=5, input_size=128, c_images=5,
                            description="a logistic regression on frozen ImageNet features of EfficientNet-Lite0 "
                                        "(needs cifarlab[pretrained]; the features are cached)")
LABEL_CHECK_MODELS.register("fast", ".label_issues:fast_probabilities", folds=3, epochs=4,
                            description="the fast recipe's airbench net, a few epochs per fold")
LABEL_CHECK_MODELS.register("run", ".label_issues:run_probabilities", folds=3, epochs=5,
                            description="the run's own recipe, at most 5 epochs per fold")
# The best flagged-set precision per minute of fold-model time (benchmarks/bench_label_noise.py measures it).
DEFAULT_LABEL_CHECK_MODEL = "features"
