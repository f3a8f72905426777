"""The model zoo: every registered model (plus tv:resnet18 and timm:resnet18) keeps the CifarModel
contract. Models are built once per session and copied before anything changes them; batches are 2."""
from __future__ import annotations

import copy
import importlib.util
import sys

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from cifarlab.errors import CifarlabError
from cifarlab.models import create_model, get_recipe, list_models
from cifarlab.models.profile import describe_model, describe_models

HAS_TIMM = importlib.util.find_spec("timm") is not None
needs_timm = pytest.mark.skipif(not HAS_TIMM, reason="timm is not installed (pip install -e '.[timm]')")

EXTERNAL = ["tv:resnet18", pytest.param("timm:resnet18", marks=needs_timm)]
NAMES = list_models() + EXTERNAL
NAMES_CFG = NAMES

_BUILT: dict[str, nn.Module] = {}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The CPU is shared: two OpenMP threads competing with another process make small convs ~50×
    # slower (resnet20 forward: 0.7 s instead of 0.01 s). One thread is fast and predictable.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def built(name: str) -> nn.Module:
    """The model `name` in eval mode, built once (seeded); copy it before changing it."""
    if name not in _BUILT:
        torch.manual_seed(0)
        _BUILT[name] = create_model(name, num_classes=10).eval()
    return _BUILT[name]


def batch(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", NAMES)
def test_logits_and_pre_logits(name):
    model, x = built(name), batch()
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_head(model.forward_features(x), pre_logits=True)
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    assert feats.ndim == 2 and feats.shape[0] == 2
    classifier = model.get_classifier()
    assert isinstance(classifier, nn.Linear) and classifier.in_features == feats.shape[1]


@pytest.mark.parametrize("name", NAMES)
def test_one_sgd_step(name):
    model = copy.deepcopy(built(name)).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss = nn.functional.cross_entropy(model(batch()), torch.tensor([3, 7]))
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert model.get_classifier().weight.grad is not None
    with torch.no_grad():
        assert torch.isfinite(model.eval()(batch())).all()


@pytest.mark.parametrize("name", NAMES)
def test_safetensors_round_trip(name, tmp_path):
    model, path = built(name), tmp_path / "model.safetensors"
    save_file(model.state_dict(), str(path))
    torch.manual_seed(123)  # a different init, so loading must do the work
    fresh = create_model(name, num_classes=10)
    fresh.load_state_dict(load_file(str(path)))
    fresh.eval()
    x = batch()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x))


@pytest.mark.parametrize("name", NAMES)
def test_reset_classifier(name):
    model = copy.deepcopy(built(name))
    model.reset_classifier(5)
    with torch.no_grad():
        assert model(batch()).shape == (2, 5)
    assert model.get_classifier().out_features == 5


@pytest.mark.parametrize("name", NAMES_CFG)
def test_default_cfg_names_resolve(name):
    model = built(name)
    cfg = model.default_cfg
    for key in ("classifier", "first_conv", "cam_layer"):
        assert isinstance(cfg.get(key), str), key
        model.get_submodule(cfg[key])
    assert model.get_submodule(cfg["classifier"]) is model.get_classifier()
    assert isinstance(model.get_submodule(cfg["first_conv"]), nn.Conv2d)
    stages = cfg.get("stages")
    assert stages and cfg["cam_layer"] in stages
    # Every stage is reached by a forward pass, in order, and the outputs shrink or stay (ViT: tokens).
    outputs: dict[str, torch.Tensor] = {}
    handles = [model.get_submodule(s).register_forward_hook(
        lambda m, a, out, s=s: outputs.setdefault(s, out)) for s in stages]
    try:
        with torch.no_grad():
            model(batch())
    finally:
        for h in handles:
            h.remove()
    assert list(outputs) == stages
    sizes = [o.shape[-2] * o.shape[-1] if o.ndim == 4 else o.shape[1] for o in outputs.values()]
    assert sizes == sorted(sizes, reverse=True)
    cam = outputs[cfg["cam_layer"]]
    assert (cam.ndim == 4 and cam.shape[-1] > 1) or (cam.ndim == 3 and "grid_size" in cfg)


@pytest.mark.parametrize("name", ["resnet20", "resnet9", "vit_tiny", "tv:resnet18"])
def test_stages_work_with_feature_extraction(name):
    from torchvision.models.feature_extraction import create_feature_extractor

    model = built(name)
    extractor = create_feature_extractor(model, return_nodes=model.default_cfg["stages"])
    with torch.no_grad():
        out = extractor(batch())
    assert list(out) == model.default_cfg["stages"]


def _params(name: str) -> int:
    return sum(p.numel() for p in built(name).parameters())


def test_parameter_counts():
    assert _params("baseline") == 1_250_858
    assert _params("resnet20") == pytest.approx(0.27e6, rel=0.02)
    assert _params("resnet56") == pytest.approx(0.85e6, rel=0.02)


def test_unknown_names_raise():
    with pytest.raises(CifarlabError, match="unknown model="):
        create_model("resnet_does_not_exist")
    with pytest.raises(CifarlabError, match="list_models"):
        create_model("tv:resnet_does_not_exist")


@needs_timm
def test_unknown_timm_name_raises():
    with pytest.raises(CifarlabError, match="list_models"):
        create_model("timm:resnet_does_not_exist")


@pytest.mark.parametrize("name", ["tv:resnet18", pytest.param("timm:resnet18", marks=needs_timm)])
def test_pretrained_is_refused(name):
    with pytest.raises(CifarlabError, match="not supported yet"):
        create_model(name, pretrained=True)


def test_missing_timm_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` raise ImportError
    with pytest.raises(CifarlabError, match=r"pip install -e '\.\[timm\]'"):
        create_model("timm:resnet18")


def test_cifar_stem_on_tv_resnet18():
    model = create_model("tv:resnet18", num_classes=10, cifar_stem=True).eval()
    conv = model.get_submodule(model.default_cfg["first_conv"])
    assert conv.kernel_size == (3, 3) and conv.stride == (1, 1)
    assert isinstance(model.model.maxpool, nn.Identity)
    with torch.no_grad():
        assert model(batch()).shape == (2, 10)
    assert model.default_cfg["cam_layer"] == "model.layer4"


@needs_timm
def test_cifar_stem_on_timm_resnet18():
    model = create_model("timm:resnet18", num_classes=10, cifar_stem=True).eval()
    conv = model.get_submodule(model.default_cfg["first_conv"])
    assert conv.kernel_size == (3, 3) and conv.stride == (1, 1)
    assert model.default_cfg["cam_layer"] == "model.layer4"  # 4×4 now, not 1×1


def test_cifar_stem_on_other_families_raises():
    with pytest.raises(CifarlabError, match="can't be adapted"):
        create_model("tv:mobilenet_v3_small", cifar_stem=True)


def test_describe_model():
    facts = describe_model("resnet20")
    assert set(facts) == {"name", "params", "mflops", "description", "recipe"}
    assert facts["params"] == 269_722
    assert 70 < facts["mflops"] < 90  # about 41 M multiply-adds, 2 FLOPs each
    assert facts["recipe"] == get_recipe("resnet20").as_dict()
    assert facts["description"]
    assert [f["name"] for f in describe_models(["baseline", "resnet20"])] == ["baseline", "resnet20"]


def test_every_model_has_its_own_recipe_and_description():
    from cifarlab.models import get_model_entry

    for name in list_models():
        entry = get_model_entry(name)
        assert entry.description, name
        assert entry.recipe.schedule and entry.recipe.epochs > 0, name
    assert list_models()[0] == "baseline"


def test_describe_models_takes_a_pattern_or_one_name():
    assert [r["name"] for r in describe_models("resnet20")] == ["resnet20"]
    assert {r["name"] for r in describe_models("resnet*")} >= {"resnet20", "resnet56"}
    with pytest.raises(CifarlabError, match="no model matches 'nosuch'"):
        describe_models("nosuch")


def test_models_command_with_one_name(capsys):
    from cifarlab.cli import main

    assert main(["models", "resnet20"]) == 0
    out = capsys.readouterr().out
    assert "resnet20" in out and "resnet56" not in out
    assert main(["models", "nosuch*"]) == 2
    assert "no model matches" in capsys.readouterr().err


def test_tab_completion_lists_the_lazy_api():
    import cifarlab

    names = dir(cifarlab)
    assert {"train", "load_run", "predict", "analyze", "explain", "__version__"} <= set(names)


def test_the_lazy_api_gives_the_same_function_every_time():
    """A lazily exported name must not also be a submodule of its package: importing the submodule rebinds
    the package's attribute to the module (cifarlab.transfer.zero_shot once became a module on its second
    access, and a notebook's loop over input sizes failed on its second call)."""
    import pkgutil
    import types

    import cifarlab
    import cifarlab.pretrained as pretrained
    import cifarlab.transfer as transfer

    for name in ("zero_shot", "linear_probe", "train", "lr_find", "compare", "ablate"):
        first = getattr(cifarlab, name)
        assert callable(first) and not isinstance(first, types.ModuleType), name
        assert getattr(cifarlab, name) is first, name
    assert not isinstance(transfer.zero_shot, types.ModuleType) and transfer.zero_shot is cifarlab.zero_shot
    for package in (cifarlab, transfer, pretrained):
        exported = set(getattr(package, "__all__", ()))
        submodules = {m.name for m in pkgutil.iter_modules(package.__path__)}
        assert not exported & submodules, f"{package.__name__}: {exported & submodules} are names and submodules"


def test_models_summary_is_a_layer_table(capsys):
    from cifarlab.cli import main

    assert main(["models", "baseline", "--summary"]) == 0
    out = capsys.readouterr().out
    assert "fc1" in out and "[1, 512]" in out and "1,180,160" in out and "Total params: 1,250,858" in out
    assert "Units." not in out
    assert main(["models", "resnet*", "--summary"]) == 2
    assert "--summary describes one model" in capsys.readouterr().err
    assert main(["models", "nosuch", "--summary"]) == 2


def test_model_facts_are_counted_once_then_read_from_the_cache(monkeypatch):
    from cifarlab.models import profile

    first = describe_model("resnet20")
    assert (profile.cache_root() / "model_facts.json").is_file()
    monkeypatch.setattr(profile, "_count", lambda *a, **k: pytest.fail("counted again"))
    assert describe_model("resnet20") == first
    (profile.cache_root() / "model_facts.json").write_text("{not json")  # a damaged cache is recounted
    monkeypatch.undo()
    assert describe_model("resnet20") == first
