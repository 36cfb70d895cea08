"""1:N search at scale: exact numpy top-1 against a FAISS IVF-Flat index (docs/deployment.md, "1:N identification").

    python bench/bench_search.py [--size 1000000] [--dim 512] [--probes 1000] [--threads 2] [--json out.json]

The gallery is `size` identity centres (random unit vectors, one row per identity; by default most of their
variance lies in 64 random directions, like a face model's embeddings; --latent-dim 0 for isotropic ones).
Mated probes are a centre moved to a genuine cosine drawn uniformly in [0.5, 0.7]; non-mated probes are fresh
centres moved the same way. Printed: exact top-1 throughput (probes/s) and memory; the IVF index (nlist ~ sqrt(N))
build time, and per nprobe its throughput, recall@1 against exact search and rank-1 accuracy on the mated probes (a
missed non-mated neighbour only lowers a score that should be rejected); then, on prefixes of the gallery, exact
versus IVF (at the smallest nprobe with recall@1 >= 0.99), batched (probes/s) and one probe at a time (ms), to find
the size where IVF starts to pay. Isotropic centres have no structure at all, the hardest case for IVF (at
N = 200,000 it needed 256 of 447 lists probed).
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import numpy as np

from inference.search import ExactIndex, IvfIndex, pick_nprobe, recall_sweep


def unit_rows(rng, n: int, dim: int, basis: np.ndarray | None = None, share: float = 0.9,
              block: int = 100_000) -> np.ndarray:
    """n unit vectors: isotropic (basis None), or with `share` of the variance in the span of `basis` [L, dim]
    (a face model's embeddings fill far fewer than `dim` directions; IVF lives on that structure)."""
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, block):
        m = min(block, n - s)
        x = rng.standard_normal((m, dim), dtype=np.float32)
        if basis is not None:
            latent = len(basis)
            z = rng.standard_normal((m, latent), dtype=np.float32) @ basis
            x = np.sqrt(share / latent) * z + np.sqrt((1 - share) / dim) * x
        out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def move_to_cosine(rng, centres: np.ndarray, low: float, high: float) -> np.ndarray:
    """Each centre rotated towards a random orthogonal direction to a cosine drawn in [low, high]."""
    cos = rng.uniform(low, high, (len(centres), 1)).astype(np.float32)
    noise = rng.standard_normal(centres.shape, dtype=np.float32)
    noise -= (noise * centres).sum(1, keepdims=True) * centres
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return (cos * centres + np.sqrt(1 - cos ** 2) * noise).astype(np.float32)


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def timed_search(index, probes, k=1, repeats=1):
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        scores, rows = index.search(probes, k)
        best = min(best, time.perf_counter() - start)
    return scores, rows, best


def single_probe_ms(index, probes, count: int = 20) -> float:
    """Median latency of one probe searched alone (an interactive lookup: no batching across probes)."""
    times = []
    for q in probes[:count]:
        start = time.perf_counter()
        index.search(q[None], 1)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--probes", type=int, default=1000, help="mated probes (as many non-mated)")
    p.add_argument("--nprobes", default="1,2,4,8,16,32,64,128,256")
    p.add_argument("--prefixes", default="10000,30000,100000,300000", help="gallery sizes for the crossover")
    p.add_argument("--threads", type=int, default=None, help="BLAS/FAISS threads (default: all)")
    p.add_argument("--latent-dim", type=int, default=64, help="identity centres mostly in this many directions "
                   "(0 = isotropic random centres, IVF's worst case)")
    p.add_argument("--latent-share", type=float, default=0.9, help="share of a centre's variance in them")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    if a.threads:
        import faiss
        from threadpoolctl import threadpool_limits

        faiss.omp_set_num_threads(a.threads)
        threadpool_limits(a.threads)
    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    basis = None
    if a.latent_dim:
        basis = np.linalg.qr(rng.standard_normal((a.dim, a.latent_dim)))[0].T.astype(np.float32)
    gallery = unit_rows(rng, a.size, a.dim, basis, a.latent_share)
    mated_ids = rng.choice(a.size, a.probes, replace=False)
    mated = move_to_cosine(rng, gallery[mated_ids], 0.5, 0.7)
    nonmated = move_to_cosine(rng, unit_rows(rng, a.probes, a.dim, basis, a.latent_share), 0.5, 0.7)
    impostor = (gallery[:2000] @ gallery[2000:4000].T).ravel()
    probes = np.concatenate([mated, nonmated])
    shape = f"latent dim {a.latent_dim}, share {a.latent_share}" if a.latent_dim else "isotropic"
    print(f"gallery {a.size:,} x {a.dim} ({gallery.nbytes / 2**30:.2f} GiB, centres {shape}; impostor cosine "
          f"sd {impostor.std():.3f}) made in {time.perf_counter() - t0:.1f} s; {a.probes} mated + {a.probes} "
          "non-mated probes")
    out = {"size": a.size, "dim": a.dim, "probes": len(probes), "gallery_gib": gallery.nbytes / 2**30,
           "centres": shape, "impostor_cosine_sd": float(impostor.std())}

    exact = ExactIndex(gallery)
    exact_scores, exact_rows, exact_s = timed_search(exact, probes)
    rank1 = float((exact_rows[:a.probes, 0] == mated_ids).mean())
    out["exact"] = {"probes_per_s": len(probes) / exact_s, "rank1": rank1,
                    "peak_rss_gib": rss_gb(), "scores_block_gib": exact.block * a.size * 4 / 2**30,
                    "nonmated_top1_max": float(exact_scores[a.probes:, 0].max()),
                    "mated_top1_min": float(exact_scores[:a.probes, 0].min())}
    print(f"exact: {out['exact']['probes_per_s']:.1f} probes/s, rank-1 {out['exact']['rank1']:.4f}, peak RSS "
          f"{out['exact']['peak_rss_gib']:.2f} GiB (gallery + {out['exact']['scores_block_gib']:.2f} GiB score block); "
          f"non-mated top-1 max {out['exact']['nonmated_top1_max']:.3f}, mated top-1 min "
          f"{out['exact']['mated_top1_min']:.3f}")

    t0 = time.perf_counter()
    ivf = IvfIndex.build(gallery, seed=a.seed)
    build_s = time.perf_counter() - t0
    index_gib = (ivf.size * (a.dim * 4 + 8) + ivf.nlist * a.dim * 4) / 2**30
    print(f"IVF-Flat: nlist {ivf.nlist}, built in {build_s:.1f} s, index {index_gib:.2f} GiB")
    nprobes = [int(x) for x in a.nprobes.split(",")]
    sweep = recall_sweep(ivf, exact, mated, nprobes)  # recall where it matters: a mated probe's true identity
    for row in sweep:
        ivf.nprobe = row["nprobe"]
        _, rows, _ = timed_search(ivf, mated)
        row["rank1"] = float((rows[:, 0] == mated_ids).mean())
        print(f"  nprobe {row['nprobe']:4d}: {row['queries_per_s']:9.1f} probes/s, recall@1 vs exact "
              f"{row['recall_at_1']:.4f}, rank-1 {row['rank1']:.4f}")
    out["ivf"] = {"nlist": ivf.nlist, "build_s": build_s, "index_gib": index_gib, "sweep": sweep}

    crossover = []
    for n in [int(x) for x in a.prefixes.split(",") if int(x) < a.size] + [a.size]:
        sub = gallery[:n]
        sub_probes = np.concatenate([move_to_cosine(rng, sub[rng.choice(n, a.probes, replace=False)], 0.5, 0.7),
                                     nonmated])
        ex = ExactIndex(sub)
        _, _, ex_s = timed_search(ex, sub_probes, repeats=2 if n < a.size else 1)
        ex_ms = single_probe_ms(ex, sub_probes)
        if n == a.size:
            iv, sw, t_build = ivf, sweep, build_s
        else:
            t0 = time.perf_counter()
            iv = IvfIndex.build(sub, seed=a.seed)
            t_build = time.perf_counter() - t0
            sw = recall_sweep(iv, ex, sub_probes[:a.probes], nprobes)
        nprobe = pick_nprobe(sw, 0.99)
        row = next(r for r in sw if r["nprobe"] == nprobe)
        iv.nprobe = nprobe
        _, _, ivf_s = timed_search(iv, sub_probes, repeats=2 if n < a.size else 1)
        iv_ms = single_probe_ms(iv, sub_probes)
        del iv
        crossover.append({"size": n, "exact_probes_per_s": len(sub_probes) / ex_s, "exact_single_ms": ex_ms,
                          "ivf_nprobe": nprobe, "ivf_recall_at_1": row["recall_at_1"],
                          "ivf_probes_per_s": len(sub_probes) / ivf_s, "ivf_single_ms": iv_ms, "ivf_build_s": t_build})
        c = crossover[-1]
        print(f"N {n:>9,}: exact {c['exact_probes_per_s']:8.1f} probes/s, {ex_ms:7.2f} ms alone | IVF nprobe "
              f"{nprobe:3d} (recall@1 {c['ivf_recall_at_1']:.3f}) {c['ivf_probes_per_s']:8.1f} probes/s, "
              f"{iv_ms:7.2f} ms alone, build {t_build:.1f} s")
    for mode, ivf_key, exact_key, better in (("batched", "ivf_probes_per_s", "exact_probes_per_s", max),
                                             ("one probe at a time", "ivf_single_ms", "exact_single_ms", min)):
        faster = [better(c[ivf_key], c[exact_key]) == c[ivf_key] for c in crossover]
        pays = next((c["size"] for i, c in enumerate(crossover) if all(faster[i:])), None)  # and at every larger N
        out[f"ivf_pays_from_{'batched' if mode == 'batched' else 'single'}"] = pays
        print(f"{mode}: IVF (recall@1 >= 0.99) beats exact search from N = {pays:,}" if pays else
              f"{mode}: IVF never beats exact search at the sizes measured")
    out["crossover"] = crossover
    if a.json:
        from common import atomic

        atomic.write_json(a.json, out)
    return out


if __name__ == "__main__":
    main()
