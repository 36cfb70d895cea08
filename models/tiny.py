"""A deliberately tiny IR-style backbone for tests and the CPU demo (docs/synthetic.md).

A stride-2 first conv (3->16, 112->56) keeps CPU training fast: every later layer works on a quarter of the pixels.
Stages 16/32/64/128 with 1/2/2/1 basic IR units, each stage opening with a stride-2 unit: 56->28->14->7->4.
The output head mirrors the IR family (BN2d, Dropout, Flatten, Linear, BN1d without affine).
"""

import torch
from torch import nn

from models.ir import BGR_META, BasicBlockIR, init_face_weights, unit_and_norm
from models.registry import register


class TinyIR(nn.Module):
    def __init__(self, embedding_size: int = 512, widths: tuple[int, ...] = (16, 32, 64, 128),
                 units: tuple[int, ...] = (1, 2, 2, 1), dropout: float = 0.0, input_size: int = 112):
        super().__init__()
        stem = widths[0]
        self.input_layer = nn.Sequential(nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.PReLU(stem))
        blocks, in_ch, side = [], stem, (input_size + 1) // 2
        for n_units, width in zip(units, widths):
            for i in range(n_units):
                blocks.append(BasicBlockIR(in_ch, width, 2 if i == 0 else 1))
                in_ch = width
            side = (side + 1) // 2  # conv3x3 pad 1 stride 2 (and 1x1 pooling) both give ceil(side / 2)
        self.body = nn.Sequential(*blocks)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(in_ch * side * side, embedding_size),
            nn.BatchNorm1d(embedding_size, affine=False),
        )
        init_face_weights(self)
        self.meta = {**BGR_META, "embedding_size": embedding_size, "input_size": input_size}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return unit_and_norm(self.output_layer(self.body(self.input_layer(x))))


@register("tiny")
def tiny(**kwargs) -> TinyIR:
    return TinyIR(**kwargs)
