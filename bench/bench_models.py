"""Backbone cost: parameters, GFLOPs and images/s (forward, forward+backward) per backbone.

    python bench/bench_models.py --backbones tiny,mobilefacenet,ir_18,ir_50            # CPU fp32, channels_last off/on
    python bench/bench_models.py --device cuda --bf16 --backbones ir_50,ir_101 --iters 20

GFLOPs are counted by torch.utils.flop_counter for one 112x112 image (FLOPs = 2 x multiply-accumulates; the
"GFLOPs" of InsightFace's tables are multiply-accumulates, printed as GMACs here).
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import models


def count_gflops(model: torch.nn.Module, size: int) -> float:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def images_per_second(model, batch: int, iters: int, warmup: int, device: str, train: bool, channels_last: bool,
                      bf16: bool) -> float:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=fmt).train(train)
    x = torch.randn(batch, 3, 112, 112, device=device).contiguous(memory_format=fmt)
    target = F.normalize(torch.randn(batch, 512, device=device), dim=1)

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            if not train:
                with torch.no_grad():
                    return model(x)
            emb, norm = model(x)
            loss = (emb - target).pow(2).sum() + 1e-3 * norm.mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    return batch * iters / (time.perf_counter() - start)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default="tiny,mobilefacenet,ir_18,ir_50",
                        help="comma-separated registered names, or 'all'")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU path)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    names = models.list_backbones() if args.backbones == "all" else args.backbones.split(",")
    layouts = [False, True] if args.device == "cpu" else [True]
    prec = "bf16" if args.bf16 else "fp32"
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"device={args.device} ({where}) precision={prec} batch={args.batch} iters={args.iters} "
          f"torch={torch.__version__}")
    header = "| backbone | params (M) | GFLOPs | GMACs |"
    for cl in layouts:
        tag = "CL" if cl else "NCHW"
        header += f" fwd img/s {tag} | fwd+bwd img/s {tag} |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in names:
        torch.manual_seed(0)
        model = models.build_backbone(name)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        gflops = count_gflops(model, model.meta["input_size"])
        row = f"| {name} | {params:.2f} | {gflops:.2f} | {gflops / 2:.2f} |"
        for cl in layouts:
            for train in (False, True):
                ips = images_per_second(model, args.batch, args.iters, args.warmup, args.device, train, cl, args.bf16)
                row += f" {ips:.1f} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
