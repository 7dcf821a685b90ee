"""One factory for the study's models at 32 px: a CIFAR-style ResNet and a conv-stem ViT.

Both expose the same small API: `forward_features` (pooled penultimate features),
`forward_intermediates` (one feature map per block), `layer_stages` (the same layers as
composable steps), `get_classifier` and `reset_classifier`, so findings never branch on the
architecture.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from timm.layers import PatchEmbed
from timm.models.vision_transformer import VisionTransformer

from .config import ModelConfig, ParameterError


# ---------------------------------------------------------------- ResNet (He et al. 2016, CIFAR variant)
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2): a 3x3 stem and three stages of n basic blocks with widths w, 2w, 4w."""

    def __init__(self, num_classes: int, width: int = 16, depth: int = 8) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        blocks, cin = [], width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, stride=2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.num_features = cin
        self.head = nn.Linear(cin, num_classes)

    def forward_intermediates(self, x: torch.Tensor, indices: list[int] | None = None,
                              stop_early: bool = False) -> list[torch.Tensor]:
        """Output of the stem (index 0) and of every block (NCHW); only `indices` if given,
        and with `stop_early` no block past the deepest of them runs."""
        stages = self.layer_stages()
        last = max(indices) + 1 if indices is not None and stop_early else len(stages)
        outs = []
        for stage in stages[:last]:
            x = stage(x)
            outs.append(x)
        return outs if indices is None else [outs[i] for i in indices]

    def layer_stages(self) -> list[nn.Module]:
        """Stage k maps layer k-1's output to layer k's (the layers of `forward_intermediates`)."""
        return [self.stem, *self.blocks]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def forward_tail(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from the last of `layer_stages`' output: the stages in turn, then this, are `forward`."""
        return self.head(x.mean(dim=(2, 3)))

    def stage_of(self, group: str) -> int:
        """The first of `layer_stages` that uses the parameters of `group` (a top-level child, or
        'blocks.<j>'); len(layer_stages()) for the tail; 0, always safe, for a group it does not know."""
        if group.startswith("blocks."):
            return int(group.split(".")[1]) + 1
        return len(self.blocks) + 1 if group == "head" else 0

    def get_classifier(self) -> nn.Linear:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.head = nn.Linear(self.num_features, num_classes).to(self.head.weight.device)


# ---------------------------------------------------------------- ViT with a conv stem
class ConvStemPatchEmbed(PatchEmbed):
    """timm's PatchEmbed with its strided projection replaced by two stride-2 3x3 convs.

    LESSONS.md: the plain patch projection did not learn the glyph task on CPU; this stem did.
    """

    def __init__(self, img_size: int = 32, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 64,
                 **kwargs) -> None:
        super().__init__(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim, **kwargs)
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, embed_dim, 1))


class ConvStemViT(VisionTransformer):
    """timm ViT (patch 4 at 32 px, class-token pooling) whose features follow the shared API."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pooled, like CifarResNet
        return self.forward_head(super().forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def forward_tail(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from the last of `layer_stages`' output: the stages in turn, then this, are `forward`."""
        return self.head(self.forward_head(self.norm(x), pre_logits=True))

    def stage_of(self, group: str) -> int:
        """The first of `layer_stages` that uses the parameters of `group` (a top-level child or
        parameter, or 'blocks.<j>'); len(layer_stages()) for the tail; 0, always safe, for a group it
        does not know (stage 0 embeds the image: patch_embed, cls_token, pos_embed)."""
        if group.startswith("blocks."):
            return int(group.split(".")[1])
        return len(self.blocks) if group in ("norm", "fc_norm", "head") else 0

    def layer_stages(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """Stage k maps layer k-1's output to layer k's (the layers of `forward_intermediates`, with
        the class token first); stage 0 embeds the image as timm's forward_intermediates does."""
        def embed_and_first_block(x: torch.Tensor) -> torch.Tensor:
            return self.blocks[0](self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x)))))
        return [embed_and_first_block, *self.blocks[1:]]

    def forward_intermediates(self, x: torch.Tensor, indices: list[int] | None = None, stop_early: bool = False,
                              prefix_tokens: bool = False) -> list[torch.Tensor]:
        """Token features (NLC) after every block, or after blocks `indices`; patch tokens only
        unless `prefix_tokens` (then the class token comes first). With `stop_early` no block
        past the deepest index runs."""
        outs = super().forward_intermediates(x, indices=indices, stop_early=stop_early, intermediates_only=True,
                                             output_fmt="NLC", return_prefix_tokens=prefix_tokens)
        return [torch.cat([prefix, patches], dim=1) for patches, prefix in outs] if prefix_tokens else outs


def _resnet(cfg: ModelConfig, num_classes: int) -> nn.Module:
    if (cfg.depth - 2) % 6 or cfg.depth < 8:
        raise ParameterError(f"The 'model.depth' parameter must be 6n+2 (8, 14, 20, ...) for arch 'resnet'. "
                             f"Got {cfg.depth} instead.")
    return CifarResNet(num_classes, cfg.width, cfg.depth)


def _vit(cfg: ModelConfig, num_classes: int) -> nn.Module:
    if cfg.width % cfg.heads:
        raise ParameterError(f"The 'model.width' parameter must be divisible by 'model.heads' ({cfg.heads}) "
                             f"for arch 'vit'. Got {cfg.width} instead.")
    return ConvStemViT(img_size=32, patch_size=4, num_classes=num_classes, embed_dim=cfg.width,
                       depth=cfg.depth, num_heads=cfg.heads, embed_layer=ConvStemPatchEmbed,
                       global_pool="token")


MODELS: dict[str, Callable[[ModelConfig, int], nn.Module]] = {"resnet": _resnet, "vit": _vit}


def check_model(cfg: ModelConfig) -> None:
    """Raise ParameterError for an impossible architecture before any compute."""
    create_model(cfg, num_classes=2)


def create_model(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """Build the architecture named by `cfg.arch` with a fresh classifier of `num_classes`."""
    if cfg.arch not in MODELS:
        raise ParameterError(f"The 'model.arch' parameter must be one of {list(MODELS)}. Got {cfg.arch!r} instead.")
    return MODELS[cfg.arch](cfg, num_classes)
