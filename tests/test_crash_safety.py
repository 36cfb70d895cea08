"""Crash safety: atomic writes, checkpoints that survive kills, resume, the run-dir lock, safe data writers, early
value checks and NaN/Inf guards. Each test pins one way a run can fail: a kill, a torn file, a bad value."""

import csv
import errno
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from common import atomic
from tasks.config import compose_config, validate_config

REPO = Path(__file__).resolve().parents[1]


# --- the one write path -----------------------------------------------------------------------------------------
def test_failed_write_keeps_previous_file_and_leaves_no_litter(tmp_path):
    target = tmp_path / "metrics.json"
    atomic.write_json(target, {"a": 1})

    class DiskFull:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space"), atomic.atomic_write(target) as f:
        DiskFull(f).write(b"{}")
    with pytest.raises(RuntimeError), atomic.atomic_write(target, "w") as f:
        f.write('{"a": 2')
        raise RuntimeError("writer failed half-way")
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)  # umask-respecting, like open()


def test_killed_writer_keeps_previous_file_and_the_next_write_cleans_up(tmp_path):
    target = tmp_path / "big.bin"
    atomic.write_bytes(target, b"old" * 10)
    code = f"from common import atomic; atomic.write_bytes({str(target)!r}, b'x' * 100000)"
    env = {**os.environ, atomic.KILL_AFTER_BYTES_ENV: "5000"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env)
    assert result.returncode == -9  # SIGKILL mid-write
    assert target.read_bytes() == b"old" * 10
    assert len(list(tmp_path.glob(".big.bin.*.tmp"))) == 1  # a killed writer cannot clean up...
    atomic.write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and not list(tmp_path.glob("*.tmp"))  # ...the next writer does


# --- checkpoints --------------------------------------------------------------------------------------------------
class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_checkpoint_loading_refuses_code_whatever_the_environment_says(tmp_path, monkeypatch):
    from training.checkpoint_io import AtomicCheckpointIO

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Evil()}, path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(pickle.UnpicklingError):
        AtomicCheckpointIO().load_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()


def test_resume_picks_the_newest_checkpoint_that_verifies(tiny_cfg, caplog):
    from tasks.train import resolve_ckpt_path
    from training.checkpoint_io import AtomicCheckpointIO, verify_checkpoint

    cfg = tiny_cfg("run", "ckpt_path=auto")
    ckpt_dir = Path(cfg.paths.ckpt_dir)
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 10, "state_dict": {"w": torch.ones(3)}}, ckpt_dir / "step00000010.ckpt")
    io.save_checkpoint({"global_step": 20, "state_dict": {"w": torch.ones(3)}}, ckpt_dir / "last.ckpt")
    time.sleep(0.01)
    whole = (ckpt_dir / "last.ckpt").read_bytes()
    (ckpt_dir / "step00000020.ckpt").write_bytes(whole[: len(whole) // 2])  # torn under its final name
    assert "torn or truncated" in verify_checkpoint(ckpt_dir / "step00000020.ckpt")  # None would mean it verifies
    with caplog.at_level("WARNING"):
        assert resolve_ckpt_path(cfg) == str(ckpt_dir / "last.ckpt")
    assert "skipped step00000020.ckpt" in caplog.text
    (ckpt_dir / "last.ckpt").write_bytes(whole[:100])
    assert resolve_ckpt_path(cfg) == str(ckpt_dir / "step00000010.ckpt")
    with pytest.raises(ValueError, match="torn or truncated"):
        resolve_ckpt_path(tiny_cfg("run", f"ckpt_path={ckpt_dir / 'last.ckpt'}"))


def test_last_checkpoint_is_written_every_epoch(tmp_path, tiny_cfg, monkeypatch):
    """Killed in epoch 1 (long before the step interval), the run still has last.ckpt of epoch 0."""
    from tasks import train as train_task
    from training.lit_module import FaceRecognitionModule

    def crash(self):
        if self.current_epoch == 1:
            raise SystemError("preempted")

    monkeypatch.setattr(FaceRecognitionModule, "on_train_epoch_start", crash, raising=False)
    with pytest.raises(SystemError, match="preempted"):
        train_task.run(tiny_cfg("run", "trainer.max_epochs=3", "callbacks.steps.every_n_train_steps=1000"))
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 0 and ckpt["global_step"] == 3  # 48 images / batch 16
    assert not (tmp_path / "run" / ".run.lock").exists()  # released on the way out


def test_resuming_a_finished_run_changes_nothing(tmp_path, capsys):
    from tasks import train as train_task

    cfg = compose_config(["debug=smoke", "validation=synthetic_hq", "trainer.max_epochs=1"],
                         output_dir=str(tmp_path / "run"))
    first = train_task.run(cfg)
    run = tmp_path / "run"
    before = {name: (run / name).read_bytes() for name in ("metrics.json", "metrics.md", "logs/metrics.csv")}
    again = train_task.run(compose_config(["debug=smoke", "validation=synthetic_hq", "trainer.max_epochs=1",
                                      "ckpt_path=auto"], output_dir=str(run)))
    assert "already finished" in capsys.readouterr().out
    assert {name: (run / name).read_bytes() for name in before} == before
    assert again["val/hq_avg"] == first["val/hq_avg"]


def test_resume_from_the_final_step_checkpoint_validates_its_weights(tmp_path):
    """A step checkpoint of the last batch is written before that epoch's validation: a run killed there and resumed
    reports the validation of those weights, as the uninterrupted run did, not the previous epoch's."""
    import shutil

    from tasks import train as train_task

    args = ["debug=smoke", "validation=synthetic_hq", "trainer.max_epochs=2", "data.batch_size=16",
            "callbacks.steps.every_n_train_steps=1", "callbacks.steps.save_top_k=-1", "logger=none"]
    reference = train_task.run(compose_config(args, output_dir=str(tmp_path / "reference")))
    final = tmp_path / "reference" / "checkpoints" / f"step{int(reference['train/global_step']):08d}.ckpt"
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    shutil.copy(final, tmp_path / "run" / "checkpoints")
    resumed = train_task.run(compose_config([*args, "ckpt_path=auto"], output_dir=str(tmp_path / "run")))

    def validation(metrics):
        return {k: v for k, v in metrics.items() if not k.startswith("train/")}

    assert validation(reference) and validation(resumed) == validation(reference)
    assert resumed["train/global_step"] == reference["train/global_step"]


def test_csv_history_is_kept_and_rows_after_the_resumed_step_dropped(tmp_path):
    from training.run_logs import ResumableCSVWriter

    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train/loss\n0,4,2.0\n0,9,1.5\n1,14,1.2\n1,1")  # last line torn by a kill
    writer = ResumableCSVWriter(str(tmp_path), resume_step=9)
    writer.log_metrics({"train/loss": 1.4, "epoch": 1}, step=14)
    writer.save()
    rows = list(csv.DictReader(path.open()))
    assert [(r["step"], r["train/loss"]) for r in rows] == [("4", "2.0"), ("9", "1.5"), ("14", "1.4")]


# --- one run per run dir ------------------------------------------------------------------------------------------
def test_a_second_run_on_the_same_dir_is_refused_and_stale_locks_are_taken_over(tmp_path, caplog):
    from common.run_lock import LOCK_NAME, RunDirBusy, RunDirLock

    with RunDirLock(tmp_path, heartbeat_s=0.05):
        with pytest.raises(RunDirBusy, match=f"in use by process {os.getpid()}"):
            RunDirLock(tmp_path).acquire()
        time.sleep(0.2)
        assert json.loads((tmp_path / LOCK_NAME).read_text())["heartbeat"] > time.time() - 1
    assert not (tmp_path / LOCK_NAME).exists()

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    lock = {"pid": int(dead.stdout), "host": socket.gethostname(), "started": 0, "heartbeat": time.time()}
    (tmp_path / LOCK_NAME).write_text(json.dumps(lock))
    with caplog.at_level("WARNING"), RunDirLock(tmp_path):
        pass
    assert "stale lock" in caplog.text and "is gone" in caplog.text
    (tmp_path / LOCK_NAME).write_text(json.dumps({**lock, "host": "elsewhere", "heartbeat": time.time() - 3600}))
    with RunDirLock(tmp_path, stale_after_s=300):
        pass
    (tmp_path / LOCK_NAME).write_text(json.dumps({**lock, "host": "elsewhere", "heartbeat": time.time()}))
    with pytest.raises(RunDirBusy, match="elsewhere"):
        RunDirLock(tmp_path, stale_after_s=300).acquire()


# --- data writers and readers -------------------------------------------------------------------------------------
def _pack(folder: Path, n: int, value: int) -> None:
    from dataset.convert import write_insightface_rec

    img = np.full((16, 16, 3), value, np.uint8)
    write_insightface_rec(folder / "train", [(img, i % 2) for i in sorted(range(n), key=lambda i: i % 2)],
                          name="train", progress=False)


def test_interrupted_publication_is_rolled_back_or_completed(tmp_path):
    from dataset.formats import RecPairWriter, open_rec, recover_pair

    _pack(tmp_path, 4, 10)
    rec, idx = tmp_path / "train" / "train.rec", tmp_path / "train" / "train.idx"
    old = (rec.read_bytes(), idx.read_bytes())
    # killed after moving the old index aside, before the new .rec was renamed: the old pair comes back
    writer = RecPairWriter(tmp_path / "train", "train")
    with pytest.raises(KeyboardInterrupt), writer as w:
        w.write_idx(0, b"\x00" * 8)
        w.close()
        os.replace(idx, idx.with_name("train.idx.old"))
        tmp_rec = writer._tmp_rec.read_bytes()
        raise KeyboardInterrupt
    writer._tmp_rec.write_bytes(tmp_rec)  # what a SIGKILL would have left behind
    assert "rolled back" in recover_pair(rec)
    assert (rec.read_bytes(), idx.read_bytes()) == old and not list(rec.parent.glob(".*.tmp"))
    # killed after the new .rec was renamed, before its index: the new index is put in place on open
    _pack(tmp_path / "new", 6, 200)
    new_rec, new_idx = tmp_path / "new" / "train" / "train.rec", tmp_path / "new" / "train" / "train.idx"
    os.replace(idx, idx.with_name("train.idx.old"))
    os.replace(new_rec, rec)
    os.replace(new_idx, idx.with_name(".train.idx.999999.abcd.tmp"))
    with open_rec(rec) as r:
        assert len(r.keys) == 6 + 1 + 2  # header0 + 6 images + 2 identity records of the new pack
    assert not idx.with_name("train.idx.old").exists()


def _rec_info(*args) -> tuple[int, str]:
    result = subprocess.run([sys.executable, "-m", "dataset.convert", "rec-info", *map(str, args)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout + result.stderr


def test_rec_info_finds_truncation_and_names_a_corrupt_record(tmp_path):
    import cv2

    from dataset.convert import write_insightface_rec

    rng = np.random.default_rng(0)
    images = [(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), 0) for _ in range(6)]
    write_insightface_rec(tmp_path / "train", images, name="train", progress=False)
    rec = tmp_path / "train" / "train.rec"
    assert _rec_info(rec, "--check")[0] == 0
    data = bytearray(rec.read_bytes())
    ok, jpeg = cv2.imencode(".jpg", images[2][0])
    at = bytes(data).index(jpeg.tobytes()[900:964])  # inside image key 3 (key 0 is header0)
    data[at] ^= 0x01  # a flipped bit in the entropy-coded data: libjpeg warns but decodes
    rec.write_bytes(bytes(data))
    code, out = _rec_info(rec, "--check")
    assert code == 1 and "key 3" in out and "Corrupt JPEG" in out
    rec.write_bytes(bytes(data[: len(data) // 2]))
    code, out = _rec_info(rec)
    assert code == 1 and "BROKEN" in out


def test_ijb_pair_file_with_unknown_templates_fails_before_embedding(tmp_path):
    from dataset.evalsets import write_packed_set
    from validation.suite import ValidationSuite

    img = np.full((112, 112, 3), 90, np.uint8)
    rows = [(img, {"name": f"{i}", "label": 0, "template": t, "media": i}) for i, t in enumerate([1, 1, 2])]
    write_packed_set(tmp_path / "ijbb", rows, ["template", "media"],
                     extra_files={"meta/ijbb_template_pair_label.txt": "1 2 1\n1 7 0\n"})
    suite = ValidationSuite(["ijbb"], tmp_path)
    with pytest.raises(ValueError, match=r"ijbb_template_pair_label.txt names 1 templates.*first: 7"):
        suite.datasets()


# --- early value checks and NaN/Inf guards ------------------------------------------------------------------------
@pytest.mark.parametrize("override,key", [("data.batch_size=0", "data.batch_size"), ("optim.lr=-0.1", "optim.lr"),
                                          ("trainer.max_epochs=0", "trainer.max_epochs"),
                                          ("nonfinite_loss=ignore", "nonfinite_loss")])
def test_out_of_range_values_fail_before_any_data_is_read(tmp_path, override, key):
    with pytest.raises(ValueError, match=rf"{key}="):
        validate_config(compose_config(["data=ms1mv2", override], output_dir=str(tmp_path)))  # no data there


def test_batch_larger_than_the_dataset_is_named_right_after_the_index(tiny_cfg):
    from dataset.datamodule import resolve_training_data

    cfg = tiny_cfg("run", "data.batch_size=64")  # 48 images
    with pytest.raises(ValueError, match="data.batch_size=64 is larger than the 48 images"):
        resolve_training_data(cfg.data, cfg.paths.cache_dir)


def test_nonfinite_loss_stops_with_a_named_error_or_skips(tiny_cfg):
    from tasks.train import build_module

    cfg = tiny_cfg("run")
    images = torch.randint(0, 256, (2, 3, 112, 112), dtype=torch.uint8)
    module = build_module(cfg, num_classes=6)
    with torch.no_grad():
        module.head.kernel.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite training loss at step 0"):
        module.training_step((images, torch.tensor([0, 1])), 0)
    module.nonfinite_loss = "skip"
    assert module.training_step((images, torch.tensor([0, 1])), 0) is None


def test_evaluation_refuses_nonfinite_embeddings(tmp_path):
    from dataset.formats import write_bin
    from validation.suite import ValidationSuite

    write_bin(tmp_path / "lfw.bin", [np.full((112, 112, 3), 90, np.uint8)] * 4, [True, False])
    suite = ValidationSuite(["lfw"], tmp_path)
    emb = np.ones((4, 8), np.float32)
    emb[2, 3] = np.nan
    with pytest.raises(ValueError, match="1 images have non-finite embeddings.*index 2"):
        suite.compute(0, emb, np.ones((4, 1), np.float32))


@pytest.mark.slow
def test_export_fails_on_nan_weights(tmp_path):
    import models
    from deploy.export import export_onnx

    model = models.build_backbone("tiny")
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(RuntimeError, match="non-finite"):
        export_onnx(model, tmp_path / "nan.onnx", verbose=False)
    assert not (tmp_path / "nan.onnx").exists()  # a failed export publishes nothing


# --- the chaos test -----------------------------------------------------------------------------------------------
def _validation_values(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if not k.startswith("train/")}


def _complete_checkpoints(ckpt_dir: Path) -> dict[str, int]:
    """path -> global step of every checkpoint that verifies (read before a restart: later saves overwrite)."""
    from training.checkpoint_io import verify_checkpoint

    if not ckpt_dir.is_dir():
        return {}
    return {str(p): int(torch.load(p, map_location="cpu", mmap=True, weights_only=True)["global_step"])
            for p in ckpt_dir.glob("*.ckpt") if verify_checkpoint(p) is None}


@pytest.mark.slow
def test_chaos_kill_at_random_moments_then_resume_gives_the_uninterrupted_results(tmp_path):
    """SIGKILL at 10 moments drawn from a fixed seed (after 1-2 further checkpoints plus 0-300 ms, so kills land in
    training steps, validation and checkpoint writes; two of them inside a checkpoint write through the writer's
    test hook), `ckpt_path=auto` each time, TMPDIR on another filesystem where there is one: the run finishes,
    never restarts from step 0, resumes from the newest complete checkpoint (so at most one checkpoint interval is
    lost per kill), and its validation values equal an uninterrupted run's."""
    interval = 2
    args = ["debug=smoke", "trainer.max_epochs=3", "data.batch_size=8",
            f"callbacks.steps.every_n_train_steps={interval}",
            "logger=csv"]  # 22 steps per epoch: room for 10 kills
    env = dict(os.environ)
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        env["TMPDIR"] = str(shm)

    def start(run: Path, *extra: str, extra_env: dict | None = None) -> subprocess.Popen:
        cmd = [sys.executable, "main.py", *args, f"hydra.run.dir={run}", *extra]
        return subprocess.Popen(cmd, cwd=REPO, env={**env, **(extra_env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    reference = tmp_path / "reference"
    proc = start(reference)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]

    run = tmp_path / "chaos"
    rng = np.random.default_rng(20261130)
    waits, pauses = rng.integers(1, 3, size=10), rng.uniform(0.0, 0.3, size=10)
    writer_kills = {3, 7}
    resumed_from = []
    for attempt in range(10):
        complete = _complete_checkpoints(run / "checkpoints")
        expected = max(complete.values(), default=0)
        hook = {atomic.KILL_AFTER_BYTES_ENV: str(4_000_000)} if attempt in writer_kills else None
        proc = start(run, "ckpt_path=auto", extra_env=hook)
        if hook is None:  # wait for 1-2 new step checkpoints, then a random pause, then SIGKILL
            seen = set((run / "checkpoints").glob("step*.ckpt"))
            deadline = time.time() + 300
            while proc.poll() is None and time.time() < deadline:
                if len(set((run / "checkpoints").glob("step*.ckpt")) - seen) >= waits[attempt]:
                    break
                time.sleep(0.02)
            time.sleep(pauses[attempt])
            proc.kill()
        out, _ = proc.communicate(timeout=600)
        if proc.returncode == 0:  # finished before the kill
            break
        assert proc.returncode == -9, out[-3000:]
        if expected:  # resumed, and from the newest complete checkpoint, never from scratch
            chosen = [line.split("resuming from ")[-1].strip() for line in out.splitlines() if "resuming from" in line]
            assert chosen, out[-3000:]
            step = complete[chosen[0]]  # KeyError: it chose a file that was not complete
            assert step == expected > 0
            resumed_from.append((step, Path(chosen[0]).name))
    proc = start(run, "ckpt_path=auto")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert resumed_from, "no kill landed after the first checkpoint: the delays are too short for this machine"
    print(f"chaos: {len(resumed_from)} resumes, from {resumed_from} (checkpoint every {interval} steps)")
    assert _validation_values(run) == _validation_values(reference)
    ref_metrics = json.loads((reference / "metrics.json").read_text())
    assert json.loads((run / "metrics.json").read_text())["train/global_step"] == ref_metrics["train/global_step"]
    assert not list(run.rglob("*.tmp"))  # the last writers cleaned up what killed ones left


def test_a_second_training_run_on_a_held_run_dir_refuses(tmp_path, tiny_cfg):
    from common.run_lock import RunDirBusy, RunDirLock
    from tasks import train as train_task

    cfg = tiny_cfg("run", "trainer.max_epochs=1")
    with RunDirLock(tmp_path / "run"), pytest.raises(RunDirBusy, match="in use by process"):
        train_task.run(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before anything was written


def test_full_disk_during_a_pack_rerun_keeps_the_old_pair_and_removes_temporaries(tmp_path, monkeypatch):
    from dataset import recordio

    _pack(tmp_path, 4, 10)
    folder = tmp_path / "train"
    (folder / ".train.rec.999999.dead.tmp").write_bytes(b"left by a killed writer")
    before = {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}
    real_close = recordio.MXIndexedRecordIO.close

    def full_disk(self):
        real_close(self)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(recordio.MXIndexedRecordIO, "close", full_disk)
    with pytest.raises(OSError, match="No space"):
        _pack(tmp_path, 6, 200)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no temporaries, old litter gone too


def test_a_corrupt_jpeg_in_a_training_pack_names_the_record(tmp_path):
    import cv2

    from dataset.convert import write_insightface_rec
    from dataset.readers import TrainRecordDataset

    rng = np.random.default_rng(1)
    images = [(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), i // 2) for i in range(4)]
    write_insightface_rec(tmp_path / "train", images, name="train", progress=False)
    rec = tmp_path / "train" / "train.rec"
    data = bytearray(rec.read_bytes())
    ok, jpeg = cv2.imencode(".jpg", images[1][0])
    data[bytes(data).index(jpeg.tobytes()[900:964])] ^= 0x01  # decodes with a libjpeg warning only
    rec.write_bytes(bytes(data))
    dataset = TrainRecordDataset(str(rec))
    dataset[0]
    with pytest.raises(ValueError, match=r"train\.rec key 2.*Corrupt JPEG"):
        dataset[1]
