"""The GPU path, measured in one go: training throughput per precision against the hardware's bf16 peak, the loader
against the step, DDP over NCCL, bf16 numerics and validation throughput. Prints a table; asserts nothing (the checks
are reported as pass/fail rows).

    python bench/gpu_check.py --device cuda --out gpu_results        # the H200 run
    python bench/gpu_check.py --device cpu --quick --out /tmp/gc     # the same code paths, tiny sizes, < 1 minute

Each item runs in its own process with its own time cap (a hung or crashed item costs only its cap), in priority
order; `results.json` and `table.md` are rewritten in --out after every item, so a run stopped by a time limit keeps
what it measured. `--only a,b` reruns chosen items. Items:

  peak        bf16 matrix product (8192^3; fp32 1024^3 on CPU): the measured ceiling for model FLOPs utilisation
  ir101_bf16  ir_101 + AdaFace head (85,742 classes, as MS1MV2), bf16-mixed, channels_last, batch 512
  ir101_prec  the same in fp32, then 16-mixed (fp16 autocast + GradScaler)
  ir50_bf16   ir_50, bf16-mixed, batch 512
  loader      the real `main.py` training loop (Lightning, packed .rec of 112x112 JPEGs, AdaFace augmenter) against
              the bare step, and the bare loader at several worker counts
  ddp         `trainer=ddp trainer.devices=1` (NCCL) with `experiment=qgface` in bf16-mixed: a short fit with
              validation to the end and finite losses
  numerics    the loss over the first steps of one fixed-seed run in fp32 vs bf16; the margin head computes in fp32
              under autocast
  validation  embeddings/s with flip fusion on an IJB-B-sized image count; IJB-B-sized pair scoring on GPU vs CPU
  compile     ir_101 bf16 with torch.compile (late: its compile time is the one cost nobody can bound beforehand)
  loop        the `main.py` loop's own overheads: pinned vs pageable host memory, and compile=true through Lightning

MFU (model FLOPs utilisation) = images/s x training FLOPs per image (forward + backward, counted by
torch.utils.flop_counter on the model and head) / peak FLOP/s, against the measured bf16 peak and the datasheet's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DATASHEET_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0}  # dense, by the vendors' datasheets
IJBB_IMAGES, IJBB_TEMPLATES, IJBB_PAIRS = 227_630, 12_115, 8_010_270

FULL = dict(model="ir_101", batch=512, classes=85_742, steps=20, fp32_steps=8, small_model="ir_50", preset="demo",
            loader_workers=(2, 4, 8, 16), loader_batches=12, main_steps=45, numerics_model="ir_50",
            numerics_batch=128, numerics_steps=30, val_images=IJBB_IMAGES, val_batch=512, val_cap_s=25.0,
            ijb_templates=IJBB_TEMPLATES, ijb_pairs=IJBB_PAIRS, peak_n=8192, step_cap_s=20.0, smoke_epochs=2, warmup=2,
            main_timeout_s=80)
QUICK = dict(model="tiny", batch=4, classes=100, steps=2, fp32_steps=1, small_model="tiny", preset="smoke",
             loader_workers=(0, 2), loader_batches=3, main_steps=6, numerics_model="tiny", numerics_batch=8,
             numerics_steps=3, val_images=256, val_batch=64, val_cap_s=5.0, ijb_templates=400, ijb_pairs=20_000,
             peak_n=512, step_cap_s=5.0, smoke_epochs=1, warmup=1,
             main_timeout_s=60)

# name -> time cap in seconds (caps are safety nets: a hung item costs its cap, not the run)
ITEMS = {"peak": 40, "ir101_bf16": 60, "ir101_prec": 75, "ir50_bf16": 45, "loader": 130, "ddp": 110,
         "numerics": 60, "validation": 70, "compile": 240, "loop": 300}
QUICK_SKIPS = {"compile": "CPU inductor compilation alone takes about a minute on 2 cores",
               "loop": "GPU-only questions (pinned memory, compile); the loader item runs the main.py loop on CPU"}
NUMERICS_TOLERANCE = 0.05  # |loss_bf16 - loss_fp32| / loss_fp32 at every step of the first N
_save_partial = None  # set in the child process: items call _partial(result) after each row


# --- helpers used inside items ---------------------------------------------------------------------------------------
def _partial(result: dict) -> dict:
    """Keep what an item measured so far: a time cap that ends it mid-way still reports the finished rows."""
    if _save_partial is not None:
        _save_partial(result)
    return result


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def peak_flops(device: str, n: int) -> dict:
    """Measured ceiling: a large matrix product (bf16 on CUDA, fp32 on CPU), mean of 10 after 3 warm-ups."""
    import torch

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    _sync(device)
    seconds = (time.perf_counter() - start) / 10
    return {"dtype": str(dtype).replace("torch.", ""), "n": n, "tflops": 2 * n**3 / seconds / 1e12}


def train_flops_per_image(name: str, classes: int, device: str) -> float:
    """FLOPs of one training image: backbone + AdaFace head forward and backward (2 x multiply-accumulates)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from losses import build_head
    from models import build_backbone, preprocess

    model = build_backbone(name).to(device)
    head = build_head("adaface", embedding_size=model.meta.get("embedding_size", 512), num_classes=classes).to(device)
    batch = 2
    images = torch.randint(0, 256, (batch, 3, 112, 112), dtype=torch.uint8, device=device)
    labels = torch.randint(0, classes, (batch,), device=device)
    with FlopCounterMode(display=False) as counter:
        emb, norm = model(preprocess(images, model.meta))
        torch.nn.functional.cross_entropy(head(emb, norm, labels), labels).backward()
    return counter.get_total_flops() / batch


def _mfu(images_per_s: float, flops: float, env: dict) -> dict:
    achieved = images_per_s * flops / 1e12
    out = {"model_tflops": achieved}
    if env.get("peak_tflops"):
        out["mfu_measured"] = achieved / env["peak_tflops"]
    if env.get("datasheet_tflops"):
        out["mfu_datasheet"] = achieved / env["datasheet_tflops"]
    return out


def run_main(overrides: list[str], run_dir: Path, env_extra: dict, timeout: float) -> tuple[int, str]:
    """`python main.py <overrides>` with its run dir pinned; returns (exit code, tail of the output)."""
    cmd = [sys.executable, str(ROOT / "main.py"), f"hydra.run.dir={run_dir}", *overrides]
    env = {**os.environ, **env_extra, "PYTHONUNBUFFERED": "1"}
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"") if isinstance(err.stdout, bytes) else (err.stdout or "").encode()
        return 124, out.decode(errors="replace")[-3000:]
    return done.returncode, (done.stdout + done.stderr)[-3000:]


def _metrics_rows(run_dir: Path) -> list[dict]:
    import csv

    rows = []
    for path in sorted(run_dir.rglob("metrics.csv")):
        with open(path, newline="") as f:
            rows.extend(csv.DictReader(f))
    return rows


def _finite_column(rows: list[dict], key: str) -> tuple[int, bool]:
    import math

    values = [float(r[key]) for r in rows if r.get(key) not in (None, "")]
    return len(values), bool(values) and all(math.isfinite(v) for v in values)


# --- items -----------------------------------------------------------------------------------------------------------
def item_peak(cfg, device, env, work):
    peak = peak_flops(device, cfg["peak_n"])
    return {"rows": [{"what": f"{peak['dtype']} matmul {peak['n']}^3", "tflops": peak["tflops"]}], "peak": peak}


def _step_rows(cfg, device, env, name, precisions, compile=False, classes=None, steps=None):
    from bench_train import train_step_rate

    classes = classes or cfg["classes"]
    flops = train_flops_per_image(name, classes, device)
    rows = []
    for precision in precisions:
        n = cfg["fp32_steps"] if precision == "32" else (steps or cfg["steps"])
        r = train_step_rate(name, cfg["batch"], n, device, channels_last=True, precision=precision,
                            num_classes=classes, compile=compile, time_cap_s=cfg["step_cap_s"],
                            warmup=cfg["warmup"])
        rows.append({"what": f"{name} {precision}{' compile' if compile else ''} b{cfg['batch']} C={classes}",
                     "images_per_s": r["images_per_s"], "peak_mem_gb": r["peak_mem_gb"], "steps": r["steps"],
                     "final_loss": r["final_loss"], "gflops_per_image": flops / 1e9,
                     **_mfu(r["images_per_s"], flops, env)})
        _partial({"rows": rows})
    return {"rows": rows}


def item_ir101_bf16(cfg, device, env, work):
    return _step_rows(cfg, device, env, cfg["model"], ["bf16-mixed"])


def item_ir101_prec(cfg, device, env, work):
    import torch

    out = _step_rows(cfg, device, env, cfg["model"], ["32", "16-mixed"])
    if device == "cuda":
        out["tf32"] = {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
                       "matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32}
    return out


def item_ir50_bf16(cfg, device, env, work):
    return _step_rows(cfg, device, env, cfg["small_model"], ["bf16-mixed"])


def item_compile(cfg, device, env, work):
    start = time.perf_counter()
    out = _step_rows(cfg, device, env, cfg["model"], ["bf16-mixed"], compile=True)
    out["rows"][0]["wall_s_incl_compile"] = time.perf_counter() - start
    return out


def _preset_classes(preset: str, cache: Path) -> int:
    from dataset.synthetic import builder

    root = builder.build(cache, preset, 0, workers=os.cpu_count())
    return int(json.loads((root / "train" / "dataset.json").read_text())["num_classes"])


def item_loader(cfg, device, env, work):
    from bench_train import loader_rate, train_step_rate

    cache = work / "cache"
    os.environ["FACE_CACHE_DIR"] = str(cache)
    t0 = time.perf_counter()
    classes = _preset_classes(cfg["preset"], cache)
    build_s = time.perf_counter() - t0
    batch, name = cfg["batch"], cfg["model"]
    bare = train_step_rate(name, batch, cfg["steps"], device, channels_last=True,
                           precision="bf16-mixed" if device == "cuda" else "32", num_classes=classes,
                           time_cap_s=cfg["step_cap_s"], warmup=cfg["warmup"])
    rows = [{"what": f"bare step {name} b{batch} C={classes}", "images_per_s": bare["images_per_s"]}]
    for workers in cfg["loader_workers"]:
        rate = loader_rate(cfg["preset"], batch, workers, cfg["loader_batches"], "adaface")
        rows.append({"what": f"loader adaface, {workers} workers", "images_per_s": rate,
                     "vs_bare_step": rate / bare["images_per_s"]})
        _partial({"rows": rows, "preset_build_s": build_s})
    workers = max(cfg["loader_workers"])
    rows.append(_main_loop_row(cfg, device, work, workers, bare["images_per_s"], "loader", []))
    return {"rows": rows, "preset_build_s": build_s}


def _main_loop_row(cfg, device, work, workers: int, bare_rate: float, tag: str, extra: list[str]) -> dict:
    """images/s of `main.py` training (TrainingThroughput callback) with `extra` overrides, against the bare step."""
    cache = work / "cache"
    name, batch = cfg["model"], cfg["batch"]
    run_dir = work / "runs" / tag
    overrides = [f"data=synthetic_{cfg['preset']}", f"backbone={name}", f"data.batch_size={batch}",
                 f"data.num_workers={workers}", "augmentation=adaface", "validation.sets=[]",
                 f"trainer.max_steps={cfg['main_steps']}", "trainer.max_epochs=100", "logger=none", "callbacks=none",
                 "+callbacks.throughput._target_=training.throughput.TrainingThroughput",
                 "+callbacks.throughput.warmup_steps=3", "trainer.enable_progress_bar=false", "print_config=false",
                 *(["trainer=gpu"] if device == "cuda" else []), *extra]
    rc, tail = run_main(overrides, run_dir, {"FACE_CACHE_DIR": str(cache)}, timeout=cfg["main_timeout_s"])
    what = f"main.py training loop, {workers} workers{' ' + ' '.join(extra) if extra else ''}"
    summary_path = run_dir / "throughput.json"
    if rc != 0 or not summary_path.is_file():
        return {"what": what, "check": "FAIL", "rc": rc, "tail": tail[-1500:]}
    summary = json.loads(summary_path.read_text())
    return {"what": what, "images_per_s": summary["images_per_s"], "vs_bare_step": summary["images_per_s"] / bare_rate,
            "host_gap_fraction": summary["host_gap_fraction"], "steps": summary["steps"]}


def item_loop(cfg, device, env, work):
    """The training loop's own overheads: pinned host memory (an asynchronous host-to-device copy) and compile=true
    through the LightningModule, against the bare step."""
    from bench_train import train_step_rate

    cache = work / "cache"
    os.environ["FACE_CACHE_DIR"] = str(cache)
    classes = _preset_classes(cfg["preset"], cache)
    bare = train_step_rate(cfg["model"], cfg["batch"], cfg["steps"], device, channels_last=True,
                           precision="bf16-mixed" if device == "cuda" else "32", num_classes=classes,
                           time_cap_s=cfg["step_cap_s"], warmup=cfg["warmup"])
    rows = [{"what": f"bare step {cfg['model']} b{cfg['batch']} C={classes}", "images_per_s": bare["images_per_s"]}]
    workers = max(cfg["loader_workers"])
    variants = [["data.pin_memory=false"], ["data.pin_memory=true"]]
    if device == "cuda":  # CPU inductor compilation alone takes minutes on a small machine
        variants.append(["data.pin_memory=true", "compile=true"])
    for i, extra in enumerate(variants):
        rows.append(_main_loop_row(cfg, device, work, workers, bare["images_per_s"], f"loop{i}", extra))
        _partial({"rows": rows})
    return {"rows": rows}


def item_ddp(cfg, device, env, work):
    """One run covers both: DDP (NCCL on CUDA, gloo on CPU) with one device, fit + validation to the end, and the
    QGFace objective in bf16-mixed with every logged loss finite (a non-finite loss also stops the run)."""
    cache = work / "cache"
    ddp = ["trainer=ddp", "trainer.devices=1"] if device == "cuda" else ["trainer=ddp_cpu", "trainer.devices=1"]
    overrides = ["debug=smoke", "experiment=qgface", *ddp, "trainer.precision=bf16-mixed",
                 f"trainer.max_epochs={cfg['smoke_epochs']}", "trainer.enable_progress_bar=false"]
    run_dir = work / "runs" / "ddp_qgface"
    rc, tail = run_main(overrides, run_dir, {"FACE_CACHE_DIR": str(cache)}, timeout=ITEMS["ddp"] - 10)
    metrics = _metrics_rows(run_dir)
    n_val = sum(1 for r in metrics if any(k.startswith("val") and r.get(k) not in (None, "") for k in r))
    n_loss, finite = _finite_column(metrics, "train/loss")
    ok = rc == 0 and n_val > 0 and n_loss > 0 and finite
    result = {"rows": [{"what": f"{' '.join(ddp)} experiment=qgface bf16-mixed: fit + validation",
                        "check": "pass" if ok else "FAIL", "rc": rc, "validation_rows": n_val,
                        "logged_losses": n_loss, "all_finite": finite}]}
    if not ok:
        result["tail"] = tail
    return result


def loss_trace(name: str, precision: str, batch: int, steps: int, classes: int, device: str) -> tuple[list, dict]:
    """Training losses of a fixed-seed run (same weights, same batches) and the dtypes seen at the head."""
    import torch

    from losses import build_head
    from models import build_backbone, preprocess

    torch.manual_seed(0)
    model = build_backbone(name).to(device).to(memory_format=torch.channels_last)
    head = build_head("adaface", embedding_size=model.meta.get("embedding_size", 512), num_classes=classes).to(device)
    opt = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=0.05, momentum=0.9)
    seen = {}
    head.register_forward_hook(lambda m, args, out: seen.update(head_in=str(args[0].dtype), head_out=str(out.dtype)))
    gen = torch.Generator().manual_seed(1)
    amp = precision == "bf16-mixed"
    losses = []
    for _ in range(steps):
        images = torch.randint(0, 256, (batch, 3, 112, 112), dtype=torch.uint8, generator=gen).to(device)
        labels = torch.randint(0, classes, (batch,), generator=gen).to(device)
        x = preprocess(images, model.meta).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
            emb, norm = model(x)
            logits = head(emb, norm, labels)
            loss = torch.nn.functional.cross_entropy(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses, seen


def item_numerics(cfg, device, env, work):
    args = (cfg["numerics_model"], cfg["numerics_batch"], cfg["numerics_steps"], 1000, device)
    fp32, _ = loss_trace(args[0], "32", *args[1:])
    bf16, dtypes = loss_trace(args[0], "bf16-mixed", *args[1:])
    rel = [abs(b - f) / abs(f) for f, b in zip(fp32, bf16, strict=True)]
    finite = all(map(lambda v: v == v and abs(v) != float("inf"), fp32 + bf16))
    head_fp32 = dtypes.get("head_out") == "torch.float32"
    return {"rows": [
        {"what": f"{args[0]} loss fp32 vs bf16, {args[2]} steps b{args[1]}",
         "check": "pass" if finite and max(rel) <= NUMERICS_TOLERANCE else "FAIL",
         "max_rel_diff": max(rel), "mean_rel_diff": sum(rel) / len(rel), "tolerance": NUMERICS_TOLERANCE,
         "first_loss": [fp32[0], bf16[0]], "last_loss": [fp32[-1], bf16[-1]]},
        {"what": "margin head output dtype under bf16 autocast", "check": "pass" if head_fp32 else "FAIL", **dtypes}],
        "loss_fp32": fp32, "loss_bf16": bf16}


def _embedding_rate(cfg, device, name: str) -> dict:
    import torch

    from models import build_backbone, preprocess
    from validation.flip_fusion import fuse

    model = build_backbone(name).to(device).to(memory_format=torch.channels_last).eval()
    batch = cfg["val_batch"]
    pool = torch.randint(0, 256, (4 * batch, 3, 112, 112), dtype=torch.uint8)
    if device == "cuda":
        pool = pool.pin_memory()
    amp = device == "cuda"

    @torch.no_grad()
    def embed(chunk):
        x = preprocess(chunk.to(device, non_blocking=True), model.meta).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
            e, n = model(x)
            ef, nf = model(x.flip(3))
        return e.float().cpu().numpy(), n.float().cpu().numpy(), ef.float().cpu().numpy(), nf.float().cpu().numpy()

    embed(pool[:batch])  # warm-up
    _sync(device)
    start, done, i = time.perf_counter(), 0, 0
    while done < cfg["val_images"] and time.perf_counter() - start < cfg["val_cap_s"]:
        chunk = pool[(i % 4) * batch:(i % 4 + 1) * batch]
        e, n, ef, nf = embed(chunk)
        fuse(e, n, ef, nf, "pre_norm_add")
        done += len(chunk)
        i += 1
    seconds = time.perf_counter() - start
    return {"images": done, "seconds": seconds, "images_per_s": done / seconds}


def _score_gpu(feats, p1, p2, chunk: int = 1 << 21):
    import numpy as np
    import torch

    f = torch.from_numpy(feats).cuda()
    a, b = torch.from_numpy(p1).cuda(), torch.from_numpy(p2).cuda()
    out = torch.empty(len(p1), device="cuda")
    for s in range(0, len(p1), chunk):
        out[s:s + chunk] = (f[a[s:s + chunk]] * f[b[s:s + chunk]]).sum(1)
    return np.asarray(out.cpu())


def item_validation(cfg, device, env, work):
    import numpy as np

    from validation.ijb import verification

    emb = _embedding_rate(cfg, device, cfg["model"])
    rows = [{"what": f"{cfg['model']} embeddings with flip fusion, b{cfg['val_batch']}"
                     f"{' bf16' if device == 'cuda' else ''}",
             "images_per_s": emb["images_per_s"], "images": emb["images"],
             "ijbb_projected_s": IJBB_IMAGES / emb["images_per_s"]}]
    _partial({"rows": rows})
    rng = np.random.default_rng(0)
    t, p = cfg["ijb_templates"], cfg["ijb_pairs"]
    feats = rng.standard_normal((t, 512), dtype=np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    p1, p2 = rng.integers(0, t, p), rng.integers(0, t, p)
    start = time.perf_counter()
    cpu = verification(feats, np.arange(t), p1, p2)
    cpu_s = time.perf_counter() - start
    rows.append({"what": f"IJB scoring CPU (validation.ijb.verification), {t} templates, {p} pairs",
                 "seconds": cpu_s})
    if device == "cuda":
        _score_gpu(feats, p1[:1000], p2[:1000])  # context, allocator
        start = time.perf_counter()
        gpu = _score_gpu(feats, p1, p2)
        gpu_s = time.perf_counter() - start
        rows.append({"what": "IJB scoring GPU (gather-dot, incl. transfers)", "seconds": gpu_s,
                     "cpu_over_gpu": cpu_s / gpu_s, "max_abs_diff": float(np.abs(gpu - cpu).max())})
    return {"rows": rows}


ITEM_FUNCS = {name: globals()[f"item_{name}"] for name in ITEMS}


# --- orchestration ---------------------------------------------------------------------------------------------------
def environment(device: str) -> dict:
    import numpy
    import pytorch_lightning
    import torch

    env = {"date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "torch": torch.__version__,
           "pytorch_lightning": pytorch_lightning.__version__, "numpy": numpy.__version__,
           "cpu_cores": os.cpu_count(), "device": device}
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
        optional = {"cuda": lambda: torch.version.cuda, "cudnn": torch.backends.cudnn.version,
                    "nccl": lambda: ".".join(map(str, torch.cuda.nccl.version())),
                    "driver": lambda: subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                                                      "--format=csv,noheader"], capture_output=True, text=True,
                                                     timeout=20).stdout.strip()}
        for key, read in optional.items():  # a version we cannot read is reported as null, not a failed run
            try:
                env[key] = read()
            except Exception:  # noqa: BLE001
                env[key] = None
        env["datasheet_tflops"] = next((v for k, v in DATASHEET_BF16_TFLOPS.items() if k in env["gpu"]), None)
    return env


def run_item(name: str, args) -> None:
    """Child process: run one item, write its JSON."""
    import torch

    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    cfg = QUICK if args.quick else FULL
    env = json.loads(Path(args.env_json).read_text()) if args.env_json else {}
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    def save(result: dict) -> None:
        Path(args.item_out).write_text(json.dumps(result, default=str))

    global _save_partial
    _save_partial = save
    save(ITEM_FUNCS[name](cfg, args.device, env, work) | {"complete": True})


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def table(results: dict) -> str:
    env = results["env"]
    head = ", ".join(f"{k} {env[k]}" for k in ("gpu", "driver", "torch", "cuda", "cudnn", "nccl",
                                                   "pytorch_lightning", "cpu_cores", "date") if env.get(k) is not None)
    lines = [f"{head}; measured bf16 peak {_fmt(env.get('peak_tflops'))} TFLOP/s, datasheet "
             f"{_fmt(env.get('datasheet_tflops'))}", "",
             "| item | what | images/s | peak mem (GB) | MFU meas. | MFU sheet | other |",
             "|---|---|---|---|---|---|---|"]
    known = {"what", "images_per_s", "peak_mem_gb", "mfu_measured", "mfu_datasheet"}
    for name, item in results["items"].items():
        if item["status"] != "ok":
            lines.append(f"| {name} | {item['status']} after {item['seconds']:.0f} s | | | | | "
                         f"{item.get('error', '')[-200:]!r} |")
        for row in item.get("result", {}).get("rows", []):
            other = "; ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k not in known)
            cells = [_fmt(row.get(k, "")) for k in ("images_per_s", "peak_mem_gb")]
            cells += [f"{row[k]:.1%}" if k in row else "" for k in ("mfu_measured", "mfu_datasheet")]
            lines.append(f"| {name} | {row['what']} | {' | '.join(cells)} | {other} |")
    return "\n".join(lines) + "\n"


def _run_one(name: str, args, work: Path, env_json: Path, cap: float) -> dict:
    """Run one item in a child process under its time cap; its entry for results.json."""
    if args.quick and name in QUICK_SKIPS:
        return {"status": "skipped (--quick)", "seconds": 0.0, "why": QUICK_SKIPS[name]}
    if cap < 5:
        return {"status": "skipped (budget spent)", "seconds": 0.0}
    item_out = work / f"{name}.json"
    item_out.parent.mkdir(parents=True, exist_ok=True)
    item_out.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--item", name, "--device", args.device, "--item-out", str(item_out),
           "--env-json", str(env_json), "--work", str(work)] + (["--quick"] if args.quick else [])
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=cap, cwd=ROOT)
        rc, log = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as err:
        rc, log = 124, str(err.stderr or "")
    seconds = time.perf_counter() - start
    partial = json.loads(item_out.read_text()) if item_out.is_file() else None
    if rc == 0 and partial and partial.get("complete"):
        return {"status": "ok", "seconds": seconds, "result": partial}
    entry = {"status": "timed out" if rc == 124 else f"failed (rc {rc})", "seconds": seconds, "error": log[-4000:]}
    if partial:  # the rows it finished before the cap or the failure
        entry["result"] = partial
    return entry


def orchestrate(args) -> dict:
    from common import atomic

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or out / "work")
    names = [n for n in ITEMS if not args.only or n in args.only.split(",")]
    unknown = set(args.only.split(",")) - set(ITEMS) if args.only else set()
    if unknown:
        raise SystemExit(f"unknown item(s) {sorted(unknown)}; choose from {list(ITEMS)}")
    env = environment(args.device)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if args.only and results_path.is_file() else {"items": {}}
    results["env"] = {**results.get("env", {}), **env}
    env_json = out / "env.json"
    deadline = time.perf_counter() + args.budget_s
    print(json.dumps(env), flush=True)
    for name in names:
        atomic.write_json(env_json, results["env"])
        entry = _run_one(name, args, work, env_json, cap=min(ITEMS[name], deadline - time.perf_counter()))
        if name == "peak" and entry["status"] == "ok":
            results["env"]["peak_tflops"] = entry["result"]["peak"]["tflops"]
        results["items"][name] = entry
        atomic.write_json(results_path, results)  # after every item, skipped ones included
        atomic.write_text(out / "table.md", table(results))
        print(f"[{name}] {entry['status']} in {entry['seconds']:.1f} s", flush=True)
    print(table(results), flush=True)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--quick", action="store_true", help="tiny sizes (the CPU test of every code path)")
    p.add_argument("--out", default="gpu_check_results", help="results.json, table.md, env.json")
    p.add_argument("--work", default=None, help="scratch dir (synthetic build, runs); default <out>/work")
    p.add_argument("--only", default=None, help="comma-separated items to (re)run; others are kept from results.json")
    p.add_argument("--budget-s", type=float, default=480.0, help="all items together")
    p.add_argument("--item", default=None, help=argparse.SUPPRESS)
    p.add_argument("--item-out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--env-json", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.item:
        try:
            run_item(args.item, args)
        except Exception:
            traceback.print_exc()
            return 1
        return 0
    results = orchestrate(args)
    return 0 if all(i["status"] == "ok" or i["status"].startswith("skipped") for i in results["items"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
