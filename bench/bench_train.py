"""Training throughput: images/s of a full training step (preprocess, backbone, AdaFace head, backward, SGD step) and
of the data loader. Prints figures; asserts nothing.

    python bench/bench_train.py                         # CPU: tiny, mobilefacenet, ir_18 at batch 64, NHWC on/off
    python bench/bench_train.py --loader-only
    python bench/bench_train.py --device cuda           # + ir_50 / ir_101 bf16 step rate vs the loader (GPU)
"""

import argparse
import os
import time

import torch

from losses import build_head
from models import build_backbone, preprocess

PRECISIONS = ("32", "bf16-mixed", "16-mixed")


def training_step(name: str, batch: int, device: str, channels_last: bool = True, precision: str = "32",
                  num_classes: int = 1000, compile: bool = False):
    """A closure running one training step (preprocess, backbone, AdaFace head, cross-entropy, backward, SGD) on
    fixed random uint8 images; it returns the loss. `precision` is Lightning's spelling: fp32, bf16 autocast, or
    fp16 autocast with a GradScaler."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    torch.manual_seed(0)
    kind = device.split(":")[0]
    model = build_backbone(name).to(device)
    head = build_head("adaface", embedding_size=model.meta.get("embedding_size", 512),
                      num_classes=num_classes).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compile else model
    opt = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(kind, enabled=precision == "16-mixed")
    amp_dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    images = torch.randint(0, 256, (batch, 3, 112, 112), dtype=torch.uint8, device=device)
    labels = torch.randint(0, num_classes, (batch,), device=device)

    def step():
        x = preprocess(images, model.meta)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=kind, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            emb, norm = forward(x)
        loss = torch.nn.functional.cross_entropy(head(emb, norm, labels), labels)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss

    return step


def train_step_rate(name: str, batch: int, steps: int, device: str, channels_last: bool = True,
                    precision: str = "32", num_classes: int = 1000, compile: bool = False,
                    time_cap_s: float | None = None, warmup: int = 2) -> dict:
    """`training_step` timed over `steps` steps (fewer when `time_cap_s` runs out). Returns images/s, step count
    and, on CUDA, the peak memory."""
    step = training_step(name, batch, device, channels_last, precision, num_classes, compile)
    kind = device.split(":")[0]
    sync = torch.cuda.synchronize if kind == "cuda" else (lambda: None)
    for _ in range(warmup):  # allocator, cuDNN autotuning, compilation
        step()
    sync()
    if kind == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    done = 0
    while done < steps:
        loss = step()
        done += 1
        if time_cap_s is not None and done % 5 == 0:
            sync()
            if time.perf_counter() - start > time_cap_s:
                break
    sync()
    seconds = time.perf_counter() - start
    return {"images_per_s": batch * done / seconds, "steps": done, "seconds": seconds,
            "final_loss": float(loss.detach()),
            "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if kind == "cuda" else None}


def train_rate(name: str, batch: int, steps: int, device: str, channels_last: bool, bf16: bool,
               num_classes: int = 1000) -> float:
    """Training images/s of backbone + AdaFace head + SGD on random uint8 images."""
    return train_step_rate(name, batch, steps, device, channels_last, "bf16-mixed" if bf16 else "32",
                           num_classes)["images_per_s"]


def loader_rate(preset: str, batch: int, workers: int, batches: int, augmentation: str) -> float:
    """Images/s of the training DataLoader (decode + augmentation + collate) on a synthetic preset."""
    from dataset.datamodule import FaceDataModule, resolve_training_data
    from tasks.config import compose_config

    cfg = compose_config([f"data=synthetic_{preset}", f"data.batch_size={batch}", f"data.num_workers={workers}",
                          f"augmentation={augmentation}", "validation.sets=[]"], output_dir="/tmp/bench_train")
    training = resolve_training_data(cfg.data, cfg.paths.cache_dir)
    dm = FaceDataModule(cfg.data, cfg.augmentation, training)
    dm.setup("fit")
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        try:
            batch_data = next(it)
        except StopIteration:
            it = iter(loader)
            batch_data = next(it)
        seen += batch_data[-1].shape[0]
    return seen / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--models", nargs="+", default=["tiny", "mobilefacenet", "ir_18"])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--preset", default="demo", help="synthetic preset for the loader benchmark")
    p.add_argument("--workers", type=int, default=None, help="loader workers (default: the data config's)")
    p.add_argument("--loader-only", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, device {args.device}")

    if not args.loader_only:
        print(f"\ntraining step (AdaFace head, 1000 classes), batch {args.batch}, fp32:")
        for name in args.models:
            for cl in (False, True):
                rate = train_rate(name, args.batch, args.steps, args.device, cl, bf16=False)
                print(f"  {name:14s} channels_last={str(cl):5s} {rate:8.1f} img/s")

    from tasks.config import compose_config

    default_workers = compose_config([f"data=synthetic_{args.preset}"], output_dir="/tmp/bench_train").data.num_workers
    workers = default_workers if args.workers is None else args.workers
    print(f"\nloader (synthetic {args.preset}, batch {args.batch}, {workers} workers):")
    for aug in ("flip", "adaface"):
        rate = loader_rate(args.preset, args.batch, workers, batches=20, augmentation=aug)
        print(f"  augmentation={aug:8s} {rate:8.1f} img/s")

    if args.device.startswith("cuda") and not args.loader_only:
        gpu_batch = 256
        cores = os.cpu_count() or 1
        loader = loader_rate(args.preset, gpu_batch, cores, batches=40, augmentation="adaface")
        print(f"\nGPU bf16 step rate, batch {gpu_batch} (loader: {cores} workers, adaface aug, {loader:.0f} img/s):")
        for name in ("ir_50", "ir_101"):
            rate = train_rate(name, gpu_batch, max(args.steps, 10), args.device, True, bf16=True, num_classes=10000)
            verdict = "keeps up" if loader >= rate else f"is the bottleneck ({loader / rate:.0%} of the step rate)"
            print(f"  {name:8s} {rate:8.1f} img/s; the loader {verdict}")


if __name__ == "__main__":
    main()
