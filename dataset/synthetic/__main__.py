"""Procedural mixed-quality face benchmark written in every real format the project reads.

    python -m dataset.synthetic --out data/synthetic --preset demo --seed 0
    python -m dataset.synthetic --samples assets          # the sample images of docs/synthetic.md
"""

from __future__ import annotations

import argparse
import time

from dataset.synthetic.builder import PRESETS, build, save_samples
from dataset.synthetic.jobs import RENDER_WORKER_CAP
from dataset.synthetic.photos import PHOTO_PRESETS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataset.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/synthetic", help="cache root (default: data/synthetic)")
    parser.add_argument("--preset", default="demo", choices=sorted(PRESETS) + sorted(PHOTO_PRESETS),
                        help="benchmark presets, or photos / photos_tiny: identity folders of loose crops + landmarks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None,
                        help=f"render processes (default: min({RENDER_WORKER_CAP}, cores))")
    parser.add_argument("--samples", default=None, metavar="DIR",
                        help="only write the sample images of docs/synthetic.md to DIR")
    args = parser.parse_args(argv)
    if args.samples:
        for path in save_samples(args.samples, args.seed):
            print(path)
        return 0
    start = time.time()
    path = build(args.out, args.preset, args.seed, workers=args.workers, verbose=True)
    print(f"{path} ({time.time() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
