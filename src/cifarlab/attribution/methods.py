"""Attribution methods behind one interface, all computed by Captum, in a registry with one factory.

    with create_explainer("gradcam", model) as e:      # hooks live only inside the block
        maps = e.attribute(x, target)                   # (N, H, W) at the input's resolution

x is the normalized input (N, 3, H, W); target a class index or an (N,) tensor of them. Every method
returns one 2-D map per image, larger = more evidence for the target:

- gradcam: Captum LayerGradCam on the CAM layer (default_cfg["cam_layer"]), ReLU'd, bilinear upsampling.
- gradcam++: Grad-CAM++ (Chattopadhay et al. 2018), which Captum lacks, computed from Captum's
  LayerActivation (A) and LayerGradientXActivation(multiply_by_inputs=False) (the gradients g):
  weights_c = sum_ij relu(g) * g^2 / (2 g^2 + sum_ij(A) g^3), map = relu(sum_c weights_c A_c).
- saliency: Captum Saliency, max |gradient| over colour channels (Simonyan et al. 2014).
- smoothgrad: Captum NoiseTunnel(Saliency), gradients averaged over noisy copies (Smilkov et al. 2017),
  noise sigma = smoothgrad_noise × the input's value range, then max |.| over channels.
- integrated-gradients: Captum IntegratedGradients from the all-zero input (the per-channel mean image
  after normalization), summed over channels (signed).
- occlusion: Captum Occlusion with a window × window patch set to zero (the mean colour), summed over
  channels (signed: the drop in the target's logit).
- guided-gradcam: Captum GuidedGradCam (guided backprop × Grad-CAM), sum of |.| over channels. Guided
  backprop changes the gradient of nn.ReLU modules only: models that call F.relu (the CIFAR ResNets) or
  use GELU (the ViT) get plain gradients × Grad-CAM there.

Token models (ViT): the layer methods read the patch tokens entering the CAM layer as a grid (see
`cifarlab.features.layers.spatial_layer`); the input methods apply unchanged.
"""
from __future__ import annotations

import contextlib
import dataclasses
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import CifarlabError
from ..registry import Registry

if TYPE_CHECKING:  # torch is imported on first use: the CLI lists these methods without loading it
    import torch
    import torch.nn as nn


@dataclass(frozen=True)
class MethodOptions:
    """Cost/quality knobs of the methods (tests and quick looks use smaller values)."""

    ig_steps: int = 32
    smoothgrad_samples: int = 16
    smoothgrad_noise: float = 0.15
    occlusion_window: int = 4
    occlusion_stride: int = 2
    batch_size: int = 128  # perturbed/interpolated images per forward pass

    def __post_init__(self) -> None:
        for f in ("ig_steps", "smoothgrad_samples", "occlusion_window", "occlusion_stride", "batch_size"):
            if getattr(self, f) < 1:
                raise CifarlabError(f"{f} must be >= 1, got {getattr(self, f)}")

    @classmethod
    def make(cls, options: MethodOptions | dict | None = None, **kwargs) -> MethodOptions:
        base = options if isinstance(options, MethodOptions) else cls(**(options or {}))
        unknown = sorted(set(kwargs) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise CifarlabError(f"unknown explainer option(s) {', '.join(unknown)}; valid: "
                                f"{', '.join(f.name for f in dataclasses.fields(cls))}")
        return dataclasses.replace(base, **kwargs)


class Explainer:
    """One attribution method bound to a model. Use it in a `with` block: every hook (and the temporary
    grid view of a ViT's token layer) is removed on exit, also after an exception."""

    name: str = ""
    description: str = ""
    uses_layer: bool = False  # a layer method (CAM layer) rather than an input-attribution method
    signed: bool = False  # maps can be negative (evidence against the target)

    def __init__(self, model: nn.Module, layer: str | None = None, options: MethodOptions | None = None):
        from ..features.layers import default_cam_layer, resolve_layer

        self.model = model
        self.options = options or MethodOptions()
        self.layer = None
        if self.uses_layer:
            self.layer = layer or default_cam_layer(model)
            resolve_layer(model, self.layer)  # a bad name fails here, listing the valid ones
        self.layer_note = ""
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> Explainer:
        from ..features.layers import hook_guard, spatial_layer

        stack = contextlib.ExitStack()
        try:
            stack.enter_context(hook_guard(self.model))
            stack.enter_context(_quiet_captum())
            stack.callback(self.model.train, self.model.training)  # eval inside: no dropout, no BN updates
            self.model.eval()
            if self.uses_layer:
                self.layer_module, self.layer_note = stack.enter_context(spatial_layer(self.model, self.layer))
            self._setup()
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def __exit__(self, *exc) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()

    def _setup(self) -> None:
        """Build the Captum objects (inside the with block, after any temporary model change)."""

    def attribute(self, x: torch.Tensor, target: int | torch.Tensor) -> torch.Tensor:
        """(N, H, W) float maps for normalized inputs x (N, 3, H, W) and the target class(es)."""
        if self._stack is None:
            raise RuntimeError(f"use the {self.name} explainer in a `with` block: with create_explainer(...) as e")
        import torch

        if isinstance(target, torch.Tensor):
            target = target.to(x.device)
        with torch.enable_grad():
            raw = self._attribute(x.detach(), target)
        return self._to_map(raw.detach(), x.shape[-2:]).float()

    def _attribute(self, x: torch.Tensor, target) -> torch.Tensor:
        raise NotImplementedError

    def _to_map(self, raw: torch.Tensor, size) -> torch.Tensor:
        raise NotImplementedError


class _LayerMap(Explainer):
    uses_layer = True

    def _to_map(self, raw, size):
        LayerAttribution = _captum("LayerAttribution")

        return LayerAttribution.interpolate(raw, tuple(size), interpolate_mode="bilinear")[:, 0]


# Every attribution method, by its class's `name`; the CLI lists them without importing torch.
EXPLAINERS = Registry("explanation method", flag="--method")


def register_explainer(cls: type[Explainer]) -> type[Explainer]:
    """Class decorator: make `cls` available by its `name` to create_explainer and the CLI."""
    if not cls.name:
        raise ValueError(f"explainer {cls.__name__} has no name")
    EXPLAINERS.register(cls.name, cls, description=cls.description, uses_layer=cls.uses_layer, signed=cls.signed)
    return cls


def list_explainers() -> list[str]:
    """Registered attribution methods, in registration order."""
    return EXPLAINERS.names()


def explainer_class(name: str) -> type[Explainer]:
    """The registered class (its name, description, uses_layer, signed), or a one-line error."""
    return EXPLAINERS.get(name)


def describe_explainers() -> dict[str, str]:
    return EXPLAINERS.describe()


def create_explainer(name: str, model: nn.Module, layer: str | None = None,
                     options: MethodOptions | dict | None = None, **kwargs) -> Explainer:
    """Build explainer `name` for `model`; `layer` (CAM methods) defaults to default_cfg["cam_layer"].

    Options: a MethodOptions, a dict or keyword arguments (ig_steps, smoothgrad_samples, ...).
    """
    return explainer_class(name)(model, layer=layer, options=MethodOptions.make(options, **kwargs))


def _captum(*names: str):
    """Classes from captum.attr, or a one-line error when Captum (the `explain` extra) is missing."""
    try:
        import captum.attr
    except ImportError:
        raise CifarlabError("explanations need Captum: pip install -e '.[explain]'") from None
    found = [getattr(captum.attr, n) for n in names]
    return found[0] if len(found) == 1 else found


@contextlib.contextmanager
def _quiet_captum():
    # Captum warns on every guided-backprop call that it sets (and removes) ReLU hooks, and that inputs
    # did not require gradients: expected here, and noise on the command line.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"captum(\.|$)")
        warnings.filterwarnings("ignore", message=r"Setting backward hooks on ReLU activations")
        warnings.filterwarnings("ignore", message=r"Input Tensor \d+ did not already require gradients")
        yield


@register_explainer
class GradCam(_LayerMap):
    name = "gradcam"
    description = "Grad-CAM (Selvaraju et al. 2017): CAM-layer activations weighted by their mean gradient"

    def _setup(self):
        LayerGradCam = _captum("LayerGradCam")

        self._gc = LayerGradCam(self.model, self.layer_module)

    def _attribute(self, x, target):
        return self._gc.attribute(x, target=target, relu_attributions=True)


@register_explainer
class GradCamPlusPlus(_LayerMap):
    name = "gradcam++"
    description = "Grad-CAM++ (Chattopadhay et al. 2018) from Captum's layer activations and gradients"

    def _setup(self):
        LayerActivation, LayerGradientXActivation = _captum("LayerActivation", "LayerGradientXActivation")

        self._act = LayerActivation(self.model, self.layer_module)
        self._grad = LayerGradientXActivation(self.model, self.layer_module, multiply_by_inputs=False)

    def _attribute(self, x, target):
        import torch
        import torch.nn.functional as F

        a = self._act.attribute(x).detach()
        g = self._grad.attribute(x, target=target).detach()
        g2, g3 = g.pow(2), g.pow(3)
        denom = 2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g3
        alpha = torch.where(g != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), 0)
        weights = (alpha * F.relu(g)).sum(dim=(2, 3), keepdim=True)
        return F.relu((weights * a).sum(dim=1, keepdim=True))


@register_explainer
class SaliencyMap(Explainer):
    name = "saliency"
    description = "Saliency (Simonyan et al. 2014): max |d score / d pixel| over colour channels"

    def _setup(self):
        Saliency = _captum("Saliency")

        self._sal = Saliency(self.model)

    def _attribute(self, x, target):
        return self._sal.attribute(x, target=target, abs=True)

    def _to_map(self, raw, size):
        return raw.abs().amax(dim=1)


@register_explainer
class SmoothGrad(SaliencyMap):
    name = "smoothgrad"
    description = "SmoothGrad (Smilkov et al. 2017): Captum NoiseTunnel over Saliency"

    def _setup(self):
        NoiseTunnel, Saliency = _captum("NoiseTunnel", "Saliency")

        self._nt = NoiseTunnel(Saliency(self.model))

    def _attribute(self, x, target):
        import torch

        o = self.options
        sigma = o.smoothgrad_noise * float(x.max() - x.min())
        per_batch = max(1, o.batch_size // max(1, len(x)))
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(0)  # the same noise for the same input: reproducible maps
            return self._nt.attribute(x, nt_type="smoothgrad", nt_samples=o.smoothgrad_samples,
                                      nt_samples_batch_size=min(per_batch, o.smoothgrad_samples),
                                      stdevs=sigma, target=target, abs=False)


@register_explainer
class IntegratedGrads(Explainer):
    name = "integrated-gradients"
    description = "Integrated Gradients (Sundararajan et al. 2017) from the mean image, summed over channels"
    signed = True

    def _setup(self):
        IntegratedGradients = _captum("IntegratedGradients")

        self._ig = IntegratedGradients(self.model)

    def _attribute(self, x, target):
        import torch

        o = self.options
        return self._ig.attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=o.ig_steps,
                                  internal_batch_size=max(o.batch_size, len(x)))

    def _to_map(self, raw, size):
        return raw.sum(dim=1)


@register_explainer
class OcclusionMap(Explainer):
    name = "occlusion"
    description = "Occlusion (Zeiler & Fergus 2014): score drop when a patch is set to the mean colour"
    signed = True

    def _setup(self):
        Occlusion = _captum("Occlusion")

        self._occ = Occlusion(self.model)

    def _attribute(self, x, target):
        o = self.options
        w, s = min(o.occlusion_window, x.shape[-1]), o.occlusion_stride
        return self._occ.attribute(x, sliding_window_shapes=(x.shape[1], w, w), strides=(x.shape[1], s, s),
                                   baselines=0.0, target=target,
                                   perturbations_per_eval=max(1, o.batch_size // max(1, len(x))))

    def _to_map(self, raw, size):
        return raw.mean(dim=1)


@register_explainer
class GuidedGradCamMap(Explainer):
    name = "guided-gradcam"
    description = "Guided Grad-CAM (Selvaraju et al. 2017): Captum GuidedGradCam, guided backprop x Grad-CAM"
    uses_layer = True

    def _setup(self):
        GuidedGradCam = _captum("GuidedGradCam")

        self._ggc = GuidedGradCam(self.model, self.layer_module)

    def _attribute(self, x, target):
        return self._ggc.attribute(x, target=target, interpolate_mode="bilinear")

    def _to_map(self, raw, size):
        return raw.abs().sum(dim=1)
