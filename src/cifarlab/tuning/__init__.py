"""Hyperparameter tuning with Optuna: `tune(base, out, trials=N)` and `config_from_study(dir)`.

Optuna is an optional dependency (the `tune` extra: `pip install -e '.[tune]'` in the checkout);
it is imported on first use.
"""
from .space import Param, default_space, load_space, parse_space
from .study import TuneResult, config_from_study, tune

__all__ = ["Param", "TuneResult", "config_from_study", "default_space", "load_space", "parse_space", "tune"]
