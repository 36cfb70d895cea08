"""AdaFace IR / IR-SE backbones with AdaFace's module tree, so released checkpoints load without key mapping.

State-dict keys: `input_layer.*`, `body.<flat unit index>.res_layer.*` / `.shortcut_layer.*`, `output_layer.*`
(docs/method.md, "IR and IR-SE, AdaFace layout"). Input is BGR normalised with (x/255-0.5)/0.5.
"""

import torch
from torch import nn

from models.registry import register

BGR_META = {"color": "BGR", "input_size": 112, "mean": 0.5, "std": 0.5, "embedding_size": 512}

# stage units per depth; >100 layers use bottleneck units (stage widths x4)
IR_UNITS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 14, 3], 100: [3, 13, 30, 3],
            152: [3, 8, 36, 3], 200: [3, 24, 36, 3]}
BASIC_WIDTHS = [64, 128, 256, 512]
BOTTLENECK_WIDTHS = [256, 512, 1024, 2048]


class SEModule(nn.Module):
    """Squeeze-and-excitation gate (keys `fc1`, `fc2`, both bias-free 1x1 convs)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    # a parameter-free 1x1 max-pool subsamples when widths match; otherwise a projection
    if in_ch == out_ch:
        return nn.MaxPool2d(1, stride)
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class _ResidualUnit(nn.Module):
    """`res_layer(x) + shortcut_layer(x)`, no activation after the sum (AdaFace's key names); optional SE block."""

    def __init__(self, res_layer: nn.Sequential, in_ch: int, out_ch: int, stride: int, use_se: bool):
        super().__init__()
        self.shortcut_layer = _shortcut(in_ch, out_ch, stride)
        self.res_layer = res_layer
        if use_se:
            self.res_layer.add_module("se_block", SEModule(out_ch, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class BasicBlockIR(_ResidualUnit):
    """BN-Conv3x3-BN-PReLU-Conv3x3(stride)-BN plus shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, use_se: bool = False):
        res_layer = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.PReLU(out_ch),
            nn.Conv2d(out_ch, out_ch, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        )
        super().__init__(res_layer, in_ch, out_ch, stride, use_se)


class BottleneckIR(_ResidualUnit):
    """1x1 reduce -> 3x3 -> 1x1(stride) expand (width/4 inside), pre-activation BN, plus shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, use_se: bool = False):
        mid = out_ch // 4
        res_layer = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.Conv2d(in_ch, mid, 1, 1, 0, bias=False),
            nn.BatchNorm2d(mid),
            nn.PReLU(mid),
            nn.Conv2d(mid, mid, 3, 1, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.PReLU(mid),
            nn.Conv2d(mid, out_ch, 1, stride, 0, bias=False),
            nn.BatchNorm2d(out_ch),
        )
        super().__init__(res_layer, in_ch, out_ch, stride, use_se)


def init_face_weights(module: nn.Module) -> None:
    """AdaFace init: kaiming-normal (fan_out, relu) convs/linears, zero biases, BN 1/0, PReLU 0.25."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.PReLU):
            nn.init.constant_(m.weight, 0.25)


def unit_and_norm(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a feature into its unit direction and its L2 norm (the quality proxy)."""
    norm = torch.linalg.vector_norm(x, ord=2, dim=1, keepdim=True)
    return x / norm, norm


class IRBackbone(nn.Module):
    """IR / IR-SE network; `forward(x) -> (unit embedding [B,E], norm [B,1])`."""

    def __init__(self, num_layers: int, use_se: bool = False, embedding_size: int = 512, dropout: float = 0.4,
                 input_size: int = 112):
        super().__init__()
        if num_layers not in IR_UNITS:
            raise ValueError(f"IR depth {num_layers} not supported; choose one of {sorted(IR_UNITS)}")
        if input_size != 112:
            raise ValueError(f"IR backbones take 112x112 input (7x7 final map), got input_size={input_size}")
        bottleneck = num_layers > 100
        widths = BOTTLENECK_WIDTHS if bottleneck else BASIC_WIDTHS
        unit = BottleneckIR if bottleneck else BasicBlockIR

        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        units, in_ch = [], 64
        for n_units, width in zip(IR_UNITS[num_layers], widths):
            for i in range(n_units):
                units.append(unit(in_ch, width, 2 if i == 0 else 1, use_se))  # first unit of a stage halves the map
                in_ch = width
        self.body = nn.Sequential(*units)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(in_ch * 7 * 7, embedding_size),
            nn.BatchNorm1d(embedding_size, affine=False),
        )
        init_face_weights(self)
        self.meta = {**BGR_META, "embedding_size": embedding_size}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return unit_and_norm(self.output_layer(self.body(self.input_layer(x))))


def _factory(depth: int, use_se: bool):
    def build(**kwargs) -> IRBackbone:
        return IRBackbone(depth, use_se=use_se, **kwargs)

    return build


register("ir_18")(_factory(18, False))
register("ir_34")(_factory(34, False))
register("ir_50")(_factory(50, False))
register("ir_101", aliases=("ir_100",))(_factory(100, False))
register("ir_152")(_factory(152, False))
register("ir_200")(_factory(200, False))
register("ir_se_50")(_factory(50, True))
register("ir_se_101", aliases=("ir_se_100",))(_factory(100, True))
