"""Which model made a score: the identity written into `thresholds.json` and checked by whoever reads it.

A threshold only means something for the weights, colour order, preprocessing and flip fusion it was calibrated
with (docs/evaluation.md, "Threshold calibration, error-versus-discard, score fusion (`task=calibrate`)"). The
weights are named by the sha256 of the checkpoint or ONNX file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

# the fields that must agree between a thresholds file and the model using it (flip fusion is adopted from the file)
CHECKED_FIELDS = ("sha256", "architecture", "color", "preprocessing")


def file_sha256(path: str | Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def model_identity(path: str | Path, arch: str | None = None, flip_fusion: str | None = "pre_norm_add",
                   backbone_kwargs: dict | None = None) -> dict:
    """{sha256, file, architecture, color, preprocessing, flip_fusion} of a checkpoint (backbone `arch`) or `.onnx`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.suffix == ".onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        meta = dict(session.get_modelmeta().custom_metadata_map)
        check_onnx_metadata(path, meta, session.get_inputs()[0].shape)
        arch_name = f"onnx:{meta.get('name', 'unknown')}"
    else:
        import models

        if arch is None:
            raise ValueError(f"{path}: a torch checkpoint needs its backbone name to name the model")
        meta = models.build_backbone(arch, **(backbone_kwargs or {})).meta
        arch_name = str(meta.get("name", arch))
    return {
        "sha256": file_sha256(path), "file": path.name, "architecture": arch_name,
        "color": str(meta.get("color", "BGR")).upper(),
        "preprocessing": {"mean": float(meta.get("mean", 0.5)), "std": float(meta.get("std", 0.5)),
                          "input_size": int(meta.get("input_size", 112))},
        "flip_fusion": flip_fusion,
    }


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX file's metadata_props (name, precision, colour order, preprocessing; written by deploy.export), read
    from the graph file alone: no session is built and external weight data is not loaded."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


ONNX_REQUIRED = ("color", "input_size", "mean", "std")


def check_onnx_metadata(path: Path, meta: dict, input_shape) -> None:
    """An ONNX file must say how to feed it (metadata_props written by deploy.export), and its metadata must agree
    with its graph: ValueError naming the file and the key otherwise
    (docs/deployment.md, "Model identity of an artifact")."""
    missing = [k for k in ONNX_REQUIRED if k not in meta]
    if missing:
        raise ValueError(f"{path}: ONNX metadata_props lacks {', '.join(missing)} (colour order and preprocessing "
                         "cannot be known; export with python -m deploy.export, which writes them)")
    if str(meta["color"]).upper() not in ("BGR", "RGB"):
        raise ValueError(f"{path}: ONNX metadata 'color' must be BGR or RGB, got {meta['color']!r}")
    dims = [d for d in list(input_shape)[2:] if isinstance(d, int)]
    if any(d != int(meta["input_size"]) for d in dims):
        raise ValueError(f"{path}: ONNX metadata input_size {meta['input_size']} disagrees with the graph's input "
                         f"shape {list(input_shape)}")


def identity_mismatch(expected: dict, actual: dict) -> list[str]:
    """The checked fields on which two identities differ, as 'field: file has X, model has Y'."""
    return [f"{k}: thresholds file has {expected.get(k)!r}, model has {actual.get(k)!r}" for k in CHECKED_FIELDS
            if expected.get(k) != actual.get(k)]


def load_thresholds(path: str | Path, identity: dict) -> dict:
    """Read a `thresholds.json` and refuse it (ValueError naming the file and the fields) when it was calibrated
    for another model."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read thresholds file {path}: {e}") from None
    expected = data.get("model") if isinstance(data, dict) else None
    if not isinstance(expected, dict) or "protocols" not in data:
        raise ValueError(f"{path}: not a thresholds file of task=calibrate (needs 'model' and 'protocols' keys)")
    if "members" in expected:
        raise ValueError(f"{path} was calibrated for a score-level fusion of {len(expected['members'])} models; "
                         "a single model cannot use it")
    bad = identity_mismatch(expected, identity)
    if bad:
        raise ValueError(f"refusing {path}: it was calibrated for another model ({'; '.join(bad)})")
    return data


def select_protocol(data: dict, protocol: str | None = None) -> str:
    """The named protocol of a thresholds file, or by default the one with the most impostor pairs."""
    protocols = data["protocols"]
    if not protocols:
        raise ValueError("the thresholds file holds no calibrated protocol")
    if protocol is None:
        protocol = max(protocols, key=lambda p: protocols[p]["impostors"])
    if protocol not in protocols:
        raise KeyError(f"thresholds file has no protocol {protocol!r}; it has {sorted(protocols)}")
    return protocol


def pick_threshold(data: dict, far: float, protocol: str | None = None) -> tuple[str, dict, float | None]:
    """(protocol name, its entry, quality threshold or None) at `far` from a thresholds file; default protocol: the
    one with the most impostor pairs. Raises naming what is missing."""
    protocol = select_protocol(data, protocol)
    cal = data["protocols"][protocol]
    entry = next((e for e in cal["entries"] if abs(e["far"] - far) <= 1e-12 * max(far, 1e-300)), None)
    if entry is None:
        raise KeyError(f"protocol {protocol!r} of the thresholds file has no FAR {far:g}; it has "
                       f"{[e['far'] for e in cal['entries']]}")
    if entry["threshold"] is None:
        raise ValueError(f"protocol {protocol!r}: FAR {far:g} is not resolved ({entry.get('note', '')}); pick a "
                         "larger FAR")
    quality = (cal.get("edc") or {}).get("quality_threshold")
    return protocol, entry, None if quality is None else float(quality["quality"])
