"""Small walls a person meets in an afternoon with cifarlab: each one, tested."""
from __future__ import annotations

import dataclasses
import inspect
import json
import pydoc
import typing

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import cifarlab  # noqa: E402
from cifarlab.cli import main  # noqa: E402
from cifarlab.config import TrainConfig  # noqa: E402
from cifarlab.errors import CifarlabError, cli_messages, python_words  # noqa: E402
from cifarlab.experiments.plots import plain_log_ticks  # noqa: E402
from cifarlab.training.engine import _epoch_line  # noqa: E402


def test_log_loss_axis_reads_as_plain_numbers():
    fig, ax = plt.subplots()
    ax.plot([1, 2], [2.3, 1.1])
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels(minor=True) + ax.get_yticklabels() if t.get_text()]
    plt.close(fig)
    assert "2" in labels and "1.6" in labels
    assert not any("times" in s or "^" in s for s in labels), labels


def test_epoch_line_rounds_a_budget_cut_epoch():
    record = {"epoch": 1.0683760683760684, "train_loss": 1.0, "train_accuracy": 0.5, "epoch_seconds": 2.0,
              "images_per_second": 100.0}
    assert _epoch_line(record, 180).startswith("epoch 1.07/180 ")
    assert _epoch_line({**record, "epoch": 3}, 3).startswith("epoch 3/3 ")


def test_results_show_themselves_in_a_notebook(trained_run, tmp_path):
    """analyze, explain, compare and tune results: a short repr and HTML with their pictures inline."""
    import cifarlab
    from cifarlab.experiments.compare import Comparison
    from cifarlab.tuning.study import TuneResult

    analysis = cifarlab.analyze(trained_run, out=tmp_path / "a", robustness_images=0, verbose=False)
    assert repr(analysis).startswith("Analysis(baseline on test") and len(repr(analysis)) < 200
    page = analysis._repr_html_()
    assert page.count("data:image/png;base64,") == len(analysis.figures()) >= 3 and "macro F1" in page
    assert analysis["metrics"]["accuracy"] == analysis.get("metrics")["accuracy"]  # still the dict it was

    from conftest import synthetic_images

    e = cifarlab.explain(trained_run, synthetic_images(1, ["cat"])[0][0], "saliency", trust_checks=False)
    assert e.figure is None and repr(e).startswith("Explanation(") and "saliency" in repr(e)
    assert "data:image/png;base64," in e._repr_html_()  # drawn on demand, though nothing was written

    (tmp_path / "cmp").mkdir()
    rows = Comparison([{"model": "baseline", "params": 1250858, "test_accuracy": 0.66}], tmp_path / "cmp")
    assert repr(rows) == f"Comparison(baseline; {tmp_path / 'cmp'})" and "1,250,858" in rows._repr_html_()
    tune = TuneResult(tmp_path, "s", "sqlite://", {"lr": 0.01}, 0.5, 0, [{"number": 0, "value": 0.5}], 0.0, None)
    assert "best trial 0: val acc 0.5000" in repr(tune) and "<table>" in tune._repr_html_()


def test_a_budget_run_announces_its_minutes_not_a_number_of_epochs():
    from cifarlab.config import TrainConfig
    from cifarlab.training.engine import _planned

    assert _planned(TrainConfig(epochs=180, budget_minutes=10)) == "10 minutes (at most 180 epochs)"
    assert _planned(TrainConfig(epochs=2)) == "2 epochs"


# --- the training settings, listed where Python looks for them ------------------------------------------------

FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


@pytest.mark.parametrize("function", [cifarlab.train, cifarlab.run, cifarlab.lr_find, cifarlab.tune])
def test_functions_taking_train_settings_list_each_one_in_their_signature(function):
    params = inspect.signature(function).parameters
    hints = typing.get_type_hints(TrainConfig)
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values())  # no opaque **overrides
    code = function.__code__
    own = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]  # what the def itself declares
    assert code.co_flags & inspect.CO_VARKEYWORDS  # the settings still arrive through **overrides
    for f in dataclasses.fields(TrainConfig):
        p = params[f.name]
        if f.name in own:
            continue  # the function's own parameter (run's model, epochs=2, device, ...)
        assert p.kind is p.KEYWORD_ONLY and p.default == _default(f) and p.annotation == hints[f.name], f.name


def test_the_subset_functions_list_only_the_settings_they_use():
    probe = inspect.signature(cifarlab.linear_probe).parameters
    assert {"pretrained", "init_from", "classes", "seed"} <= set(probe) and "lr" not in probe
    zero = inspect.signature(cifarlab.zero_shot).parameters
    assert {"model", "weights", "input_size"} <= set(zero) and "epochs" not in zero


def test_help_of_train_and_trainconfig_shows_every_setting_with_its_help():
    text = " ".join(pydoc.render_doc(cifarlab.train, renderer=pydoc.plaintext).split())
    config_text = " ".join(pydoc.render_doc(TrainConfig, renderer=pydoc.plaintext).split())
    for f in dataclasses.fields(TrainConfig):
        words = " ".join(f.metadata["help"].split()[:6])
        assert f"{f.name}:" in text and words in text, f.name
        assert f"{f.name}:" in config_text and words in config_text, f.name
    assert "batch_size: int | None = None" in text and "one of: sgd, adam" in text
    assert "Train a model and return" in text  # the function's own text stays first


def test_the_signature_binds_every_setting_train_accepts():
    bound = inspect.signature(cifarlab.train).bind(model="resnet20", lr=0.05, classes=["cat", "dog"])
    assert bound.arguments == {"model": "resnet20", "lr": 0.05, "classes": ["cat", "dog"]}


def test_a_notebook_completes_the_settings_of_train_and_run():
    jedi = pytest.importorskip("jedi")  # what IPython and Jupyter complete with
    for code, expected in (("cifarlab.train(batch_s", "batch_size="), ("cifarlab.run(label_smo", "label_smoothing=")):
        names = [c.name_with_symbols for c in jedi.Interpreter(code, [{"cifarlab": cifarlab}]).complete()]
        assert expected in names, (code, names)


# --- errors in the caller's words ---------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, words", [
    ("unknown --model 'x'; choose one of: a, b", "unknown model='x'; choose one of: a, b"),
    ("--epochs must be > 0, got 0", "epochs must be > 0, got 0"),
    ("--prune-until 0.5 has nothing to do without --prune-easy R", "prune_until=0.5 has nothing to do without "
                                                                    "prune_easy=R"),
    ("or pass --weights FILE", "or pass weights=FILE"),
    ("continue with cifarlab train --resume runs/x; or --overwrite", "continue with cifarlab train --resume runs/x; "
                                                                      "or overwrite"),
    ("a--b and x--y stay", "a--b and x--y stay"),
])
def test_python_words_name_settings_as_arguments(flags, words):
    assert python_words(flags) == words


def test_an_error_from_python_names_the_argument(tmp_path):
    with pytest.raises(CifarlabError) as caught:
        cifarlab.train(model="nonet", data=str(tmp_path), verbose=False)
    assert str(caught.value).startswith("unknown model='nonet'")
    with pytest.raises(CifarlabError, match=r"^epochs must be in \(0, 1000000\], got 0$"):
        TrainConfig(epochs=0).validate()
    with cli_messages():  # the same error, as the command line says it
        assert str(caught.value).startswith("unknown --model 'nonet'")


def test_the_same_error_on_the_command_line_names_the_flag(capsys):
    assert main(["train", "--model", "nonet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cifarlab train: error: unknown --model 'nonet'") and "model=" not in err
    assert main(["train", "--epochs", "0"]) == 2
    assert "--epochs must be in (0, 1000000], got 0" in capsys.readouterr().err
    with pytest.raises(CifarlabError, match="^unknown model="):  # and Python speaks Python again afterwards
        cifarlab.train(model="nonet")


def _error_text(message: str) -> str:
    return str(CifarlabError(message))


def test_worker_processes_of_a_command_name_flags_too():
    from cifarlab._parallel import run_parallel

    def texts() -> list[str]:
        return [f.result() for f in run_parallel(_error_text, [("--top-k must be >= 1",)], 1)]

    assert texts() == ["top_k must be >= 1"]
    with cli_messages():
        assert texts() == ["--top-k must be >= 1"]


# --- did you mean ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, hint", [
    (["trian"], "invalid choice: 'trian' (did you mean train?)"),
    (["train", "--epohcs", "3"], "cifarlab train: error: unrecognized arguments: --epohcs 3 (did you mean --epochs?)"),
    (["evaluate", "runs/x", "--tta", "flp"], "invalid choice: 'flp' (did you mean flip?)"),
    (["train", "--optimizer", "adm"], "invalid choice: 'adm' (did you mean adam?)"),
])
def test_the_parser_suggests_the_closest_command_flag_or_choice(argv, hint, capsys):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    err = capsys.readouterr().err
    assert caught.value.code == 2 and hint in err and len(err.strip().splitlines()) == 1, err


def test_a_mistyped_model_name_suggests_the_closest(capsys):
    assert main(["train", "--model", "resnt20"]) == 2
    assert "unknown --model 'resnt20' (did you mean resnet20?); choose one of:" in capsys.readouterr().err
    with pytest.raises(CifarlabError, match=r"unknown model='resnt20' \(did you mean resnet20\?\)"):
        cifarlab.create_model("resnt20")
    with pytest.raises(CifarlabError, match=r"unknown precision='bf61' \(did you mean bf16\?\); choose one of"):
        TrainConfig(precision="bf61").validate()  # a fixed tuple of choices, as a registry


def _registries():
    from cifarlab.analysis.corruptions import CORRUPTIONS
    from cifarlab.attribution.methods import EXPLAINERS
    from cifarlab.augment import AUGMENTS
    from cifarlab.choices import OPTIMIZERS, SCHEDULES, TTA
    from cifarlab.models import MODELS
    from cifarlab.recipes import RECIPES

    return {"MODELS": MODELS, "AUGMENTS": AUGMENTS, "EXPLAINERS": EXPLAINERS, "CORRUPTIONS": CORRUPTIONS,
            "RECIPES": RECIPES, "OPTIMIZERS": OPTIMIZERS, "SCHEDULES": SCHEDULES, "TTA": TTA}


@pytest.mark.parametrize("name", list(_registries()))
def test_every_registry_suggests_the_closest_name(name):
    reg = _registries()[name]
    target = max(reg.names(), key=len)
    with pytest.raises(CifarlabError, match=rf"\(did you mean {target}\?\)"):
        reg.get(target + "x")
    with pytest.raises(CifarlabError) as caught:
        reg.get("zzzzzzzz")
    assert "did you mean" not in str(caught.value)  # nothing close: no guess


def test_a_bad_torchvision_name_fails_before_any_data_is_read(monkeypatch, capsys):
    import cifarlab.training.build as build

    def no_data(*args, **kwargs):
        raise AssertionError("data was read before the model name was checked")

    monkeypatch.setattr(build, "load_data", no_data)
    assert main(["train", "--model", "tv:resnt18"]) == 2  # no --data: it would be downloaded
    err = capsys.readouterr().err
    assert "unknown --model 'tv:resnt18' (did you mean tv:resnet18?)" in err and len(err.splitlines()) == 1
    with pytest.raises(CifarlabError, match=r"did you mean tv:resnet18\?"):
        cifarlab.create_model("tv:resnt18")


# --- quiet is quiet; results show themselves briefly -----------------------------------------------------------------

def test_compare_with_verbose_false_prints_nothing(tiny_tree, tmp_path, capsys):
    base = TrainConfig(data=str(tiny_tree), epochs=1, val_size=6, precision="fp32", batch_size=32)
    rows = cifarlab.compare(["baseline"], tmp_path / "cmp", base=base, verbose=False)
    assert rows[0]["test_accuracy"] and capsys.readouterr().out == ""


def _history(epochs: int, steps: int):
    from cifarlab.rundir.result import History

    return History({"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.5, "lr": 0.1, "epoch_seconds": 3.0,
                    "augment": "standard", "steps_per_epoch": steps, "val_accuracy": 0.6,
                    "train_loss_steps": [[(e - 1) * steps + i + 1, 1.0 / (i + 1)] for i in range(steps)]}
                   for e in range(1, epochs + 1))


def test_history_shows_a_per_epoch_table_and_keeps_every_step_loss():
    history = _history(3, 350)
    text = repr(history)
    assert len(text.splitlines()) <= 8 and len(text) < 1000 < len(list.__repr__(history))
    assert text.splitlines()[0] == "History(3 epochs)" and "train_loss" in text.splitlines()[1]
    assert "1,050 step losses" in text and "about 350 per epoch" in text
    assert len(history[0]["train_loss_steps"]) == 350 and len(history.step_losses()) == 1050  # all still there
    assert json.loads(json.dumps(history)) == list(history)  # still a list of dicts
    html = history._repr_html_()
    assert html.count("<tr>") == 4 and "1,050 step losses" in html
    long = repr(_history(100, 2))
    assert "History(100 epochs)" in long and len(long.splitlines()) < 30


def test_a_run_and_a_train_result_give_their_history_as_a_history(trained_run):
    from cifarlab.rundir.result import History, TrainResult

    history = cifarlab.load_run(trained_run).history
    assert isinstance(history, History) and history[0]["train_loss_steps"]
    assert repr(history).startswith("History(2 epochs)")
    result = TrainResult(trained_run, {}, list(history), None)
    assert isinstance(result.history, History) and result.history == history


# --- run says what each stage is doing --------------------------------------------------------------------------------

RUN_ARGS = {"epochs": 1, "val_size": 6, "precision": "fp32", "batch_size": 32, "methods": "gradcam,saliency",
            "robustness_images": 6, "embed_samples": 10}


def test_run_announces_every_stage_and_is_quiet_with_verbose_false(tiny_tree, tmp_path, capsys):
    cifarlab.run(tiny_tree, tmp_path / "loud", **RUN_ARGS)
    out = capsys.readouterr().out
    stages = ["[1/6] train", "[2/6] analyze", "[3/6] explain", "[4/6] features", "[5/6] embed", "[6/6] report"]
    places = [out.index(s) for s in stages]
    assert places == sorted(places), out
    analysis = out[places[1]:places[2]]  # the analysis's own stage lines, as `cifarlab analyze` prints them
    assert "  [1/6] load ..." in analysis and "  [6/6] robustness ..." in analysis, analysis
    for name in ("train", "analyze", "explain", "features", "embed", "report"):
        assert f"\n{name}: " in out, name  # and how long it took
    cifarlab.run(tiny_tree, tmp_path / "quiet", verbose=False, **RUN_ARGS)
    assert capsys.readouterr().out == ""
