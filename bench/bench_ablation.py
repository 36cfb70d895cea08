"""Where a CPU ablation job's time goes (conf/experiment/_ablation.yaml: tiny backbone, 999 classes, batch 128, one
thread per job). Prints figures; asserts nothing.

    python bench/bench_ablation.py            # ~1 min; run it with nothing else on the machine

It measures, on one thread, in fp32 and bf16 autocast: the training step at batch B (single-view settings) and 2B
(two-view settings embed both views in one batch); the share of the 2B step's operators (torch.profiler); and the
training loader per augmentation (decode + augment, no workers). From these it prints the sweep's compute in
core-minutes and a wall-time estimate for two cores with one job per core (the README's ablation section).
"""

import argparse
import os

import torch
from bench_train import loader_rate, train_step_rate, training_step

PRECISIONS = ("32", "bf16-mixed")
# setting -> (views, loader augmentation whose cost it pays; C's L view is the AdaFace augmenter)
SETTINGS = {"baseline": (1, "flip"), "A": (1, "adaface"), "B": (1, "adaface"), "C": (2, "adaface"),
            "D": (2, "qgface_ours"), "qgface": (2, "qgface_ours")}


def operator_shares(batch: int, classes: int, steps: int = 3) -> list[tuple[str, float]]:
    """Self-CPU share of each operator over `steps` training steps (after two warm-up steps)."""
    from torch.profiler import ProfilerActivity, profile

    step = training_step("tiny", batch, "cpu", num_classes=classes)
    step(), step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sorted(((e.key, e.self_cpu_time_total / total) for e in events), key=lambda t: -t[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--classes", type=int, default=999)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--images", type=int, default=19980, help="training images per epoch (the ablation preset)")
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, {os.cpu_count()} cores")

    rates = {}
    for precision in PRECISIONS:
        for views in (1, 2):
            batch = args.batch * views
            rates[precision, views] = train_step_rate("tiny", batch, args.steps, "cpu", precision=precision,
                                                      num_classes=args.classes)["images_per_s"]
            print(f"training step, {precision:10s} batch {batch} ({views} view{'s' * (views > 1)}): "
                  f"{rates[precision, views]:6.1f} images/s")
        print(f"  two-view step per image: {rates[precision, 1] / rates[precision, 2]:.2f}x the single-view cost")

    print(f"\noperators of a batch-{2 * args.batch} fp32 step (self CPU time):")
    for name, share in operator_shares(2 * args.batch, args.classes)[:8]:
        print(f"  {name:40s} {100 * share:5.1f} %")

    print("\ntraining loader, no workers (images/s of source images; two-view: both views):")
    loader = {aug: loader_rate("ablation", args.batch, 0, 8, aug) for aug in ("flip", "adaface", "qgface_ours")}
    for aug, rate in loader.items():
        print(f"  {aug:12s} {rate:8.1f}")

    seen = args.epochs * args.images
    for precision in PRECISIONS:
        minutes = {name: (views * seen / rates[precision, views] + seen / loader[aug]) / 60
                   for name, (views, aug) in SETTINGS.items()}
        total = sum(minutes.values())
        print(f"\n{precision}: training core-minutes per job (step + loader, {args.epochs} epochs x {args.images} "
              "images): " + ", ".join(f"{k} {v:.1f}" for k, v in minutes.items()))
        print(f"  six settings: {total:.1f} core-min; on 2 cores, one job per core: about {total / 2:.1f} min "
              "(plus validation and start-up; the runs' own steps are somewhat faster than these isolated ones)")


if __name__ == "__main__":
    main()
