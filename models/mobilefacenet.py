"""MobileFaceNet (Chen et al. 2018) with a 512-d embedding, the light backbone for edge and CPU use.

Paper layout: conv3x3/2 64 -> depthwise 3x3 64 -> inverted-residual bottlenecks (t, c, n, s) = (2,64,5,2),
(4,128,1,2), (2,128,6,1), (4,128,1,2), (2,128,2,1) -> conv1x1 512 -> global depthwise conv 7x7 (linear) -> linear
embedding. The original emits 128-d; 512-d here (as InsightFace's `mbf`) so every head and evaluation path is shared.
BGR input like the AdaFace family.
"""

import torch
from torch import nn

from models.ir import BGR_META, init_face_weights, unit_and_norm
from models.registry import register

BOTTLENECK_SETTING = [(2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)]


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True,
            padding: int | None = None) -> nn.Sequential:
    padding = kernel // 2 if padding is None else padding
    layers = [nn.Conv2d(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=False),
              nn.BatchNorm2d(out_ch)]
    if act:
        layers.append(nn.PReLU(out_ch))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """Expand 1x1 -> depthwise 3x3 (stride) -> linear project 1x1; identity shortcut when shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int):
        super().__init__()
        mid = in_ch * expansion
        self.use_residual = stride == 1 and in_ch == out_ch
        self.conv = nn.Sequential(
            conv_bn(in_ch, mid, 1),
            conv_bn(mid, mid, 3, stride, groups=mid),
            conv_bn(mid, out_ch, 1, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileFaceNet(nn.Module):
    def __init__(self, embedding_size: int = 512, input_size: int = 112):
        super().__init__()
        if input_size != 112:
            raise ValueError(f"MobileFaceNet's 7x7 global depthwise conv needs 112x112 input, got {input_size}")
        self.conv1 = conv_bn(3, 64, 3, 2)
        self.conv2_dw = conv_bn(64, 64, 3, 1, groups=64)
        blocks, in_ch = [], 64
        for t, c, n, s in BOTTLENECK_SETTING:
            for i in range(n):
                blocks.append(InvertedResidual(in_ch, c, s if i == 0 else 1, t))
                in_ch = c
        self.blocks = nn.Sequential(*blocks)
        self.conv3 = conv_bn(in_ch, 512, 1)
        self.gdconv = conv_bn(512, 512, 7, groups=512, act=False, padding=0)  # global depthwise conv replaces pooling
        self.output_layer = nn.Sequential(
            nn.Flatten(),
            nn.Linear(512, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size, affine=False),
        )
        init_face_weights(self)
        self.meta = {**BGR_META, "embedding_size": embedding_size}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.gdconv(self.conv3(self.blocks(self.conv2_dw(self.conv1(x)))))
        return unit_and_norm(self.output_layer(x))


@register("mobilefacenet", aliases=("mbf",))
def mobilefacenet(**kwargs) -> MobileFaceNet:
    return MobileFaceNet(**kwargs)
