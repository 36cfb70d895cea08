"""InsightFace arcface_torch `iresnet` (r50, r100): a slightly different IR network that takes **RGB** input.

Keys follow arcface_torch (`conv1`, `bn1`, `prelu`, `layer<k>.<i>.{bn1,conv1,bn2,prelu,conv2,bn3,downsample}`,
`bn2`, `fc`, `features`) so its released `backbone.pth` files load as-is. Differences from AdaFace's IR: stage 1
opens with a conv downsample, BN eps 1e-5 everywhere, `features` is an affine BN1d with a frozen unit weight.
The original returns the raw feature; here forward returns (unit embedding, norm) like every other backbone.
"""

import torch
from torch import nn

from models.ir import init_face_weights, unit_and_norm
from models.registry import register

IRESNET_UNITS = {"r50": [3, 4, 14, 3], "r100": [3, 13, 30, 3]}


class IBasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch, eps=1e-5)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch, eps=1e-5)
        self.prelu = nn.PReLU(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch, eps=1e-5)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_ch, eps=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    def __init__(self, units: list[int], embedding_size: int = 512, dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        in_ch = 64
        for k, (n, width) in enumerate(zip(units, [64, 128, 256, 512]), start=1):
            blocks = [IBasicBlock(in_ch, width, 2)] + [IBasicBlock(width, width, 1) for _ in range(n - 1)]
            setattr(self, f"layer{k}", nn.Sequential(*blocks))
            in_ch = width
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(512 * 7 * 7, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5)
        init_face_weights(self)
        self.features.weight.requires_grad_(False)  # arcface_torch keeps this BN a pure normaliser
        self.meta = {"color": "RGB", "input_size": 112, "mean": 0.5, "std": 0.5, "embedding_size": embedding_size}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.fc(self.dropout(torch.flatten(self.bn2(x), 1)))
        return unit_and_norm(self.features(x))


@register("iresnet_r50")
def iresnet_r50(**kwargs) -> IResNet:
    return IResNet(IRESNET_UNITS["r50"], **kwargs)


@register("iresnet_r100")
def iresnet_r100(**kwargs) -> IResNet:
    return IResNet(IRESNET_UNITS["r100"], **kwargs)
