"""Which layers a model has, what they output, and reading them with forward hooks that are always removed.

Layer names are dotted module names (`model.get_submodule(name)`), as in the model contract's
default_cfg: "first_conv", "stages" (stage outputs) and "cam_layer" (the last conv stage). Vision
transformers output tokens (N, prefix + H*W, D) instead of maps: `token_layout(model)` says how many
leading tokens (the class token) to drop and which grid the rest form, and `to_spatial` reshapes them.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn as nn

from ..errors import CifarlabError

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def model_cfg(model: nn.Module) -> dict:
    return dict(getattr(model, "default_cfg", None) or {})


def stage_names(model: nn.Module) -> list[str]:
    return [s for s in model_cfg(model).get("stages") or [] if s]


def conv_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def suggested_layers(model: nn.Module) -> list[str]:
    """Names worth showing in an error: first conv, the stages, the CAM layer and the last few convs."""
    cfg = model_cfg(model)
    names = [cfg.get("first_conv"), *stage_names(model), cfg.get("cam_layer"), *conv_names(model)[-4:]]
    return list(dict.fromkeys(n for n in names if n))


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """The module called `name`, or a one-line error that lists valid names."""
    if name:
        try:
            return model.get_submodule(name)
        except AttributeError:
            pass
    cfg = model_cfg(model)
    parts = [f"stages: {', '.join(stage_names(model))}" if stage_names(model) else "",
             f"CAM layer: {cfg['cam_layer']}" if cfg.get("cam_layer") else "",
             f"first conv: {cfg['first_conv']}" if cfg.get("first_conv") else "",
             f"last convs: {', '.join(conv_names(model)[-4:])}" if conv_names(model) else ""]
    valid = "; ".join(p for p in parts if p) or ", ".join(n for n, _ in model.named_modules() if n)[:300]
    raise CifarlabError(f"unknown layer {name!r} for {type(model).__name__}; valid layers include {valid} "
                        "(any name from model.named_modules())")


def default_cam_layer(model: nn.Module) -> str:
    cfg = model_cfg(model)
    name = cfg.get("cam_layer") or (stage_names(model) or [None])[-1]
    if not name:
        raise CifarlabError(f"{type(model).__name__} has no default_cfg['cam_layer']; pass a layer name "
                            f"(e.g. one of: {', '.join(conv_names(model)[-4:])})")
    return name


def token_layout(model: nn.Module) -> tuple[int, tuple[int, int]] | None:
    """(number of prefix tokens, patch grid) for token models, from default_cfg or timm's attributes."""
    cfg = model_cfg(model)
    if cfg.get("grid_size"):
        return int(cfg.get("num_prefix_tokens", 1)), tuple(cfg["grid_size"])
    inner = getattr(model, "model", model)  # timm: the adapter's wrapped model
    grid = getattr(getattr(inner, "patch_embed", None), "grid_size", None)
    if grid is not None and hasattr(inner, "num_prefix_tokens"):
        return int(inner.num_prefix_tokens), (int(grid[0]), int(grid[1]))
    return None


def to_spatial(t: torch.Tensor, layout: tuple[int, tuple[int, int]] | None, name: str = "") -> torch.Tensor:
    """A layer output as (N, C, H, W): maps pass through, tokens (N, T, D) become (N, D, H, W)."""
    if t.ndim == 4:
        return t
    if t.ndim == 3:
        n, tokens, dim = t.shape
        if layout is None:  # no layout known: a square grid with or without one class token
            for prefix in (0, 1):
                side = math.isqrt(tokens - prefix)
                if side * side == tokens - prefix:
                    layout = (prefix, (side, side))
                    break
        if layout is not None:
            prefix, (h, w) = layout
            if tokens - prefix == h * w:
                return t[:, prefix:].transpose(1, 2).reshape(n, dim, h, w)
    raise CifarlabError(f"layer {name!r} outputs shape {tuple(t.shape)}, not a feature map (N, C, H, W) or "
                        "tokens on a grid; pick a convolutional layer or stage")


@contextlib.contextmanager
def hook_guard(model: nn.Module) -> Iterator[None]:
    """Remove, on exit (also after an exception), every module hook registered inside the block."""
    before = {id(m): {d: set(getattr(m, d, {})) for d in _HOOK_DICTS} for m in model.modules()}
    try:
        yield
    finally:
        for m in model.modules():
            old = before.get(id(m), {})
            for d in _HOOK_DICTS:
                hooks = getattr(m, d, None)
                if hooks is None:
                    continue
                for key in [k for k in hooks if k not in old.get(d, ())]:
                    del hooks[key]
                    for extra in ("_forward_hooks_with_kwargs", "_forward_hooks_always_called",
                                  "_forward_pre_hooks_with_kwargs"):
                        getattr(m, extra, {}).pop(key, None)


@contextlib.contextmanager
def capture_outputs(model: nn.Module, names: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks on the named modules; the dict fills with their (detached) outputs on each forward."""
    modules = {n: resolve_layer(model, n) for n in names}
    outputs: dict[str, torch.Tensor] = {}

    def hook(name):
        def fn(module, args, out):
            out = out[0] if isinstance(out, (tuple, list)) and out else out
            if isinstance(out, torch.Tensor):
                outputs[name] = out.detach()
        return fn

    handles = []
    try:
        for n, m in modules.items():
            handles.append(m.register_forward_hook(hook(n)))
        yield outputs
    finally:
        for h in handles:
            h.remove()


class _TokenGridView(nn.Module):
    """Wraps a token layer: the tokens entering it pass through `grid` as an (N, D, H, W) map, so that
    layer-attribution methods (Grad-CAM) hooked on `grid` see a feature map; the layer itself is unchanged."""

    def __init__(self, inner: nn.Module, prefix: int, grid: tuple[int, int]):
        super().__init__()
        self.inner, self.prefix, self.hw = inner, prefix, grid
        self.grid = nn.Identity()

    def forward(self, x: torch.Tensor, *args, **kwargs):
        n, t, d = x.shape
        h, w = self.hw
        patches = self.grid(x[:, self.prefix:].transpose(1, 2).reshape(n, d, h, w))
        x = torch.cat([x[:, :self.prefix], patches.reshape(n, d, h * w).transpose(1, 2)], 1)
        return self.inner(x, *args, **kwargs)


def probe_output(model: nn.Module, name: str, input_size: tuple[int, ...] = (3, 32, 32)) -> torch.Size:
    """The shape of the named module's output for one zero image."""
    p = next(model.parameters(), None)
    x = torch.zeros(1, *input_size, device=p.device if p is not None else "cpu")
    with torch.no_grad(), capture_outputs(model, [name]) as out:
        model(x)
    if name not in out:
        raise CifarlabError(f"layer {name!r} is not used by the model's forward pass")
    return out[name].shape


@contextlib.contextmanager
def spatial_layer(model: nn.Module, name: str) -> Iterator[tuple[nn.Module, str]]:
    """The module whose output is the (N, C, H, W) map of layer `name`, and a note on what it is.

    For a conv layer that is the layer itself. For a token layer (a ViT block) it is a temporary
    identity over the tokens *entering* the layer, reshaped to the patch grid: the patch tokens a ViT
    block outputs feed only later blocks, and the last block's never reach the class-token head (their
    gradients are zero), so Grad-CAM is read where the last attention still mixes patches into the class
    token (as pytorch-grad-cam's `blocks[-1].norm1`). The model is restored on exit.
    """
    module = resolve_layer(model, name)
    shape = probe_output(model, name, tuple(model_cfg(model).get("input_size", (3, 32, 32))))
    if len(shape) == 4:
        yield module, ""
        return
    layout = token_layout(model)
    to_spatial(torch.zeros(1, *shape[1:]), layout, name)  # raises if the tokens do not form a grid
    if layout is None:
        side = math.isqrt(shape[1])
        layout = (0, (side, side)) if side * side == shape[1] else (1, (math.isqrt(shape[1] - 1),) * 2)
    view = _TokenGridView(module, *layout)
    model.set_submodule(name, view)
    try:
        yield view.grid, f"tokens entering {name} as a {layout[1][0]}x{layout[1][1]} grid"
    finally:
        model.set_submodule(name, module)
