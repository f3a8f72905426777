"""A tiny Vision Transformer for 32×32 images: Alexey Dosovitskiy, Lucas Beyer, Alexander Kolesnikov,
Dirk Weissenborn, Xiaohua Zhai, Thomas Unterthiner, Mostafa Dehghani, Matthias Minderer, Georg
Heigold, Sylvain Gelly, Jakob Uszkoreit, Neil Houlsby (2020), "An Image is Worth 16x16 Words:
Transformers for Image Recognition at Scale", ICLR 2021, arXiv:2010.11929. Sizes from DeiT-Ti:
Hugo Touvron, Matthieu Cord, Matthijs Douze, Francisco Massa, Alexandre Sablayrolles, Hervé Jégou
(2020), "Training data-efficient image transformers & distillation through attention",
arXiv:2012.12877.

Patches of 4×4 pixels (an 8×8 grid of 64 tokens on 32×32 images) are projected to 192 dimensions, a
class token and learned position embeddings are added, and 12 pre-norm transformer blocks (3 heads,
MLP ratio 4, GELU) follow; the class token's final LayerNorm'd embedding feeds the linear head.
5.4 M parameters. Written out by hand (attention as explicit matrix products, so that FLOPs are counted
and the maps can be read), no timm needed; `drop_path_rate` defaults to 0.1 as in DeiT.

Grad-CAM: `cam_layer` is the last block, whose output is tokens (N, 1 + 64, 192), not a feature map.
Drop the `num_prefix_tokens` leading class token and reshape the rest to `grid_size` (8×8) first.

Recipe: AdamW, lr 1e-3, batch 128, weight decay 0.05, 10 warm-up epochs then cosine, 200 epochs,
label smoothing 0.1. A ViT trained from scratch on CIFAR-10 needs strong augmentation to compete with
the CNNs here.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.ops import StochasticDepth

from ._base import CifarModel
from ._registry import Recipe, register_model


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)                           # each (N, heads, T, head_dim)
        attn = (q * self.scale) @ k.transpose(-2, -1)     # (N, heads, T, T)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(n, t, d)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, dropout)
        self.drop_path1 = StochasticDepth(drop_path, mode="row")
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout)
        self.drop_path2 = StochasticDepth(drop_path, mode="row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class VisionTransformer(CifarModel):
    default_cfg = {
        **CifarModel.default_cfg,
        "classifier": "head",
        "first_conv": "patch_embed",
        "stages": [f"blocks.{i}" for i in range(12)],
        # Token outputs (N, 65, 192): drop the class token, reshape 64 tokens to 8×8 for Grad-CAM.
        "cam_layer": "blocks.11",
        "num_prefix_tokens": 1,
        "grid_size": (8, 8),
    }

    def __init__(self, img_size: int = 32, patch_size: int = 4, embed_dim: int = 192, depth: int = 12,
                 num_heads: int = 3, mlp_ratio: float = 4.0, num_classes: int = 10, dropout: float = 0.0,
                 drop_path_rate: float = 0.1):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        grid = img_size // patch_size
        self.default_cfg = {
            **self.default_cfg,
            "input_size": (3, img_size, img_size),
            "stages": [f"blocks.{i}" for i in range(depth)],
            "cam_layer": f"blocks.{depth - 1}",
            "grid_size": (grid, grid),
        }
        self.patch_embed = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, embed_dim))
        self.pos_drop = nn.Dropout(dropout)
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, dropout, r) for r in rates])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_drop = nn.Dropout(dropout)
        self.head = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)              # (N, 64, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1)
        x = self.pos_drop(x + self.pos_embed)
        return self.norm(self.blocks(x))                                 # (N, 65, D)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(x[:, 0])                                     # the class token
        return x if pre_logits else self.head(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.head = nn.Linear(self.head.in_features, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)


@register_model(recipe=Recipe(optimizer="adamw", lr=1e-3, batch_size=128, weight_decay=0.05, nesterov=False,
                              schedule="cosine", warmup_epochs=10, epochs=200, label_smoothing=0.1))
def vit_tiny(num_classes: int = 10, **kwargs) -> VisionTransformer:
    """ViT-Tiny (DeiT-Ti: 192-d, 12 blocks, 3 heads) on 4×4 patches of 32×32 images, 5.4 M parameters."""
    return VisionTransformer(num_classes=num_classes, **kwargs)
