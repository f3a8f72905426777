"""Muon for conv filters, Nesterov SGD for everything else, in one torch optimizer (`--optimizer muon`).

Muon (Keller Jordan et al. 2024, kellerjordan.github.io/posts/muon; used by airbench94_muon) replaces
each weight matrix's momentum update by its nearest semi-orthogonal matrix, computed with a few
Newton-Schulz iterations. As in airbench, a conv filter bank (out, in, kh, kw) is treated as the matrix
(out, in·kh·kw), and before each step the weight is rescaled to norm sqrt(out) (so its scale, which
batch norm ignores anyway, cannot drift and no weight decay is needed).

Why not torch.optim.Muon: it accepts 2-D parameters only and has no weight renormalization. One
optimizer (rather than a Muon and an SGD side by side) keeps the engine's single optimizer, its
checkpoint and its lr schedule unchanged. Each param group says which update it gets (`muon`).
"""
from __future__ import annotations

import torch

from ..rundir.device import cpu_has_fast_bf16

# The quintic iteration's coefficients from the Muon post: they maximize the slope at zero, so three
# steps suffice; singular values end up in about [0.5, 1.5] rather than exactly 1, which trains as well.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where the hardware multiplies it natively (as airbench: a CUDA GPU with bf16, a CPU with
    AVX-512 BF16 or AMX), float32 elsewhere. An AVX2 CPU emulates bf16 matrix products: there
    orthogonalizing a 256×2304 filter bank took 0.82 s against 25 ms in fp32, and a quarter of the time of
    an airbench training step went to it (BENCHMARKS.md)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32


def orthogonalize(g: torch.Tensor, steps: int = 3, eps: float = 1e-7) -> torch.Tensor:
    """Approximately U·Vᵀ of g = U·S·Vᵀ (2-D), by Newton-Schulz iteration (in `newton_schulz_dtype`)."""
    a, b, c = NS_COEFFICIENTS
    x = g.to(newton_schulz_dtype(g.device))
    x = x / (x.norm() + eps)  # the top singular value <= 1, where the iteration converges
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    for _ in range(steps):
        s = x @ x.T
        x = a * x + (b * s + c * s @ s) @ x
    return (x.T if tall else x).to(g.dtype)


class MuonSGD(torch.optim.Optimizer):
    """Param groups with `muon=True` get Muon (Nesterov momentum, orthogonalized update, weight
    renormalization); the others plain Nesterov SGD with coupled weight decay, as torch.optim.SGD."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.9, nesterov: bool = True,
                 weight_decay: float = 0.0, ns_steps: int = 3):
        if lr <= 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"invalid lr {lr}, momentum {momentum} or weight_decay {weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                                      muon=False, ns_steps=ns_steps))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # Each elementwise update runs once per group over all its tensors (torch._foreach_*), not once per
        # tensor: the same arithmetic, bit for bit, in a few calls instead of a few per parameter, which is
        # most of a small model's step on a GPU (BENCHMARKS.md, the engine's host work per step).
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if not group["muon"] and group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            bufs = self._momentum_buffers(params, grads)
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, grads)
            updates = torch._foreach_add(grads, bufs, alpha=group["momentum"]) if group["nesterov"] else bufs
            if group["muon"]:
                for p in params:
                    p.mul_(len(p) ** 0.5 / p.norm())
                updates = [orthogonalize(u.reshape(len(u), -1), group["ns_steps"]).view(u.shape) for u in updates]
            torch._foreach_add_(params, updates, alpha=-group["lr"])
        return loss

    def _momentum_buffers(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
        bufs = []
        for p, g in zip(params, grads):
            state = self.state[p]
            if "momentum_buffer" not in state:  # zeros made once, not on every step as setdefault would
                state["momentum_buffer"] = torch.zeros_like(g)
            bufs.append(state["momentum_buffer"])
        return bufs
