"""Progressive resizing (`--progressive-resize`): the schedule, the resize, the checks, the engine."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import yaml

import cifarlab
from cifarlab.cli import main
from cifarlab.config import TrainConfig, parse_progressive_resize
from cifarlab.errors import CifarlabError
from cifarlab.models import create_model
from cifarlab.training import loop
from cifarlab.training.progressive import resize_batch, size_for_epoch
from cifarlab.training.resolve import resolve


def test_the_schedule_parses_and_maps_epochs_to_sizes():
    assert parse_progressive_resize("24:4") == [(24, 4)]
    stages = parse_progressive_resize("16:2, 24:3")
    assert stages == [(16, 2), (24, 3)]
    assert [size_for_epoch(stages, e) for e in range(7)] == [16, 16, 24, 24, 24, None, None]
    assert size_for_epoch([], 0) is None


@pytest.mark.parametrize("spec, problem", [
    ("24", "takes SIZE:EPOCHS"),
    ("24:x", "takes SIZE:EPOCHS"),
    ("24:4,", "takes SIZE:EPOCHS"),
    ("4:2", "each size must be >= 8"),
    ("24:0", "epoch count > 0"),
])
def test_bad_schedules_name_the_problem(spec, problem):
    with pytest.raises(CifarlabError, match=problem):
        parse_progressive_resize(spec)


def test_the_config_rejects_schedules_that_cannot_work():
    assert resolve(TrainConfig(recipe="fast", progressive_resize="24:4")).progressive_resize == "24:4"
    with pytest.raises(CifarlabError, match="covers 8 of the 8 epochs; leave at least the last one"):
        resolve(TrainConfig(recipe="fast", progressive_resize="16:4,24:4"))
    with pytest.raises(CifarlabError, match="cannot be combined with input_size"):
        resolve(TrainConfig(model="resnet20", epochs=4, input_size=64, progressive_resize="24:1"))
    with pytest.raises(CifarlabError, match="or pretrained, which upsamples"):
        resolve(TrainConfig(model="tv:resnet18", pretrained="imagenet", epochs=4, progressive_resize="24:1"))


def test_the_fast_progressive_recipe_is_fast_with_nine_epochs_the_first_four_small():
    cfg = resolve(TrainConfig(recipe="fast-progressive"))
    fast = resolve(TrainConfig(recipe="fast"))
    assert (cfg.epochs, cfg.progressive_resize, fast.epochs, fast.progressive_resize) == (9, "24:4", 8, None)
    assert (cfg.model, cfg.augment, cfg.tta, cfg.batch_size) == (fast.model, fast.augment, fast.tta, fast.batch_size)
    assert resolve(TrainConfig(recipe="fast-progressive", epochs=12, progressive_resize="16:6")).epochs == 12
    with pytest.raises(CifarlabError, match="covers 4 of the 3 epochs"):
        resolve(TrainConfig(recipe="fast-progressive", epochs=3))


def test_resize_downscales_keeps_the_memory_format_and_leaves_full_size_alone():
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    small = resize_batch(x, 24)
    assert small.shape == (4, 3, 24, 24) and small.is_contiguous(memory_format=torch.channels_last)
    assert resize_batch(x, None) is x and resize_batch(x, 32) is x
    flat = torch.full((2, 3, 32, 32), 0.7)
    assert torch.allclose(resize_batch(flat, 16), torch.full((2, 3, 16, 16), 0.7))  # antialiasing keeps levels
    # Antialiased: a 1-pixel checkerboard averages out instead of aliasing into another pattern.
    board = (torch.arange(32).view(1, 1, 32, 1) + torch.arange(32).view(1, 1, 1, 32)) % 2
    assert resize_batch(board.float().expand(1, 3, 32, 32), 16).std() < 0.05


def test_airbench_global_pool_is_its_max_pool_3_at_full_size_and_takes_smaller_images():
    torch.manual_seed(0)
    model = create_model("airbench").eval()
    features = model.forward_features(torch.randn(2, 3, 32, 32))
    assert features.shape[-2:] == (3, 3)
    assert torch.equal(model.pool(features), nn.MaxPool2d(3)(features))
    assert model(torch.randn(2, 3, 24, 24)).shape == (2, 10)


def test_training_sees_the_small_sizes_first_then_full_size(train_tree, tmp_path, monkeypatch):
    seen = []

    def recording_resize(x, size):
        out = resize_batch(x, size)
        seen.append(out.shape[-1])
        return out

    monkeypatch.setattr(loop, "resize_batch", recording_resize)  # the shared step resizes
    out = tmp_path / "progressive"
    result = cifarlab.train(recipe="fast", data=str(train_tree), epochs=3, batch_size=100,
                            progressive_resize="16:1,24:1", tta="none", out=str(out), verbose=False)
    sizes = [json.loads(line)["image_size"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sizes == [16, 24, 32]
    assert seen == [16] * 3 + [24] * 3 + [32] * 3  # 300 images, batch 100
    assert json.loads((out / "config.json").read_text())["config"]["progressive_resize"] == "16:1,24:1"
    assert result.summary["test_accuracy"] is not None  # evaluated at full size


@pytest.mark.parametrize("argv, problem", [
    (["--model", "baseline", "--progressive-resize", "24:1"], "baseline cannot take 24x24 images"),
    (["--recipe", "fast", "--progressive-resize", "32:1"], "size 32 is not smaller than the 32x32"),
    (["--recipe", "fast", "--progressive-resize", "24"], "takes SIZE:EPOCHS"),
])
def test_bad_progressive_resize_is_a_one_line_error_before_anything_is_written(argv, problem, train_tree, tmp_path,
                                                                                capsys):
    out = tmp_path / "never"
    code = main(["train", "--data", str(train_tree), "--epochs", "2", "--out", str(out), "--quiet", *argv])
    err = capsys.readouterr().err
    assert code == 2 and problem in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_the_fast_record_recipe_is_the_measured_record_settings_on_the_progressive_schedule():
    """`--recipe fast-record` trains exactly what the 3-seed benchmark trained: fast-progressive with
    benchmarks/configs/fast_b1000_20x1_24x4_of_9_record.yaml (BENCHMARKS.md, docs/history.md)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "configs" / "fast_b1000_20x1_24x4_of_9_record.yaml"
    measured = resolve(TrainConfig.from_dict({**yaml.safe_load(path.read_text()), "recipe": "fast-progressive"}))
    named = resolve(TrainConfig(recipe="fast-record"))
    assert dataclasses.replace(named, recipe="fast-progressive") == measured
    assert (named.batch_size, named.epochs, named.progressive_resize, named.model_kwargs["activation"]) == (
        1000, 9, "20:1,24:4", "silu")
    assert resolve(TrainConfig(recipe="fast-record", batch_size=500, tta="none")).batch_size == 500  # flags win
