"""Calibration benchmark: subject-bootstrap thresholds on IJB-B-sized scores.

    .venv/bin/python bench/bench_calibrate.py                  # B = 1,000 replicates, 8,010,270 pairs
    .venv/bin/python bench/bench_calibrate.py --replicates 100 --pairs 1000000

Scores and subjects are synthetic with IJB-B's sizes (1,845 subjects, 10,270 genuine and 8,000,000 impostor pairs;
each subject shifts its pairs' scores, so identities matter). Timed: `validation.calibration.calibrate` without the
held-out split (the bootstrap itself), then the held-out split alone. Peak memory: the process high-water mark
(ru_maxrss) and the Python-allocated peak of the timed part (tracemalloc).
"""

import argparse
import resource
import time
import tracemalloc

import numpy as np

from validation.calibration import DEFAULT_FARS, PairScores, calibrate

N_SUBJECTS, N_GENUINE, N_IMPOSTOR = 1_845, 10_270, 8_000_000


def synthetic_pairs(n_impostor: int, n_genuine: int, n_subjects: int, seed: int = 0) -> PairScores:
    rng = np.random.default_rng(seed)
    offset = rng.normal(0, 0.05, n_subjects).astype(np.float32)
    g = rng.integers(0, n_subjects, n_genuine).astype(np.int32)
    a = rng.integers(0, n_subjects, n_impostor).astype(np.int32)
    b = ((a + rng.integers(1, n_subjects, n_impostor)) % n_subjects).astype(np.int32)
    gen = 0.55 + offset[g] + rng.normal(0, 0.12, n_genuine).astype(np.float32)
    imp = 0.5 * (offset[a] + offset[b]) + rng.normal(0, 0.1, n_impostor).astype(np.float32)
    labels = np.zeros(n_genuine + n_impostor, bool)
    labels[:n_genuine] = True
    return PairScores("ijbb-sized", np.r_[gen, imp], labels, np.r_[g, a], np.r_[g, b], source="synthetic")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicates", type=int, default=1000)
    p.add_argument("--pairs", type=int, default=N_IMPOSTOR, help="impostor pairs")
    args = p.parse_args()
    pairs = synthetic_pairs(args.pairs, N_GENUINE, N_SUBJECTS)
    print(f"{len(pairs.scores):,} pairs ({N_GENUINE:,} genuine), {N_SUBJECTS:,} subjects, B={args.replicates}")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    t0 = time.perf_counter()
    res = calibrate(pairs, DEFAULT_FARS, replicates=args.replicates, heldout=False)
    boot_s = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    t0 = time.perf_counter()
    calibrate(pairs, DEFAULT_FARS, replicates=0, heldout=True)
    held_s = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for e in res["entries"]:
        ci = e.get("threshold_interval")
        print(f"  FAR {e['far']:.0e}: threshold {e['threshold']}, 95% interval {ci}, FRR {e.get('frr')}")
    print(f"bootstrap ({res['bootstrap']}, B={args.replicates}): {boot_s:.1f} s; held-out split: {held_s:.1f} s")
    print(f"peak memory: process {rss:.0f} MB (before calibration {rss_before:.0f} MB, the input pairs), "
          f"allocated by calibration {peak / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
