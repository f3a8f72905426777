"""The fold models of `analyze --label-check` (`--label-check-model`), as a Registry with lazy
"module:attribute" targets in cifarlab.analysis.label_issues.

A top-level module of its own, in analysis's layer (tests/test_layers.py): not in choices.py, which is in
training's layer, below these targets, and not in cifarlab.analysis, which imports torch, while the CLI lists
these names as it builds its parser. This module imports no torch and nothing of cifarlab but the registry.
"""
from __future__ import annotations

from .registry import Registry

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
