"""Load pretrained backbone weights strictly from the formats users arrive with.

Accepted files:
- released AdaFace `.ckpt`: `{'state_dict': {'model.<backbone key>': ..., 'head.kernel': ..., ...}}`;
- our Lightning checkpoints (`state_dict` with `model.*` + `head.*` + whatever else the module holds);
- plain state dicts `.pt` / `.pth` (e.g. InsightFace `backbone.pth`), also wrapped as `{'state_dict_backbone': ...}`;
- `.safetensors` (any key prefix, e.g. CVLFace's).
The backbone's key prefix is detected by matching key suffixes against the model (`model.`, `module.`, `net.`, ...);
keys outside it (the head, optimizer state) are ignored. Within it loading is strict: missing, unexpected and
shape-mismatched keys are reported together, with the registered architecture the file looks like.
Pickles are read with `weights_only=True`: a file that would run code is refused before anything runs.
"""

import pickle
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from models.registry import build_backbone, list_backbones

NESTED_KEYS = ("state_dict", "state_dict_backbone", "model_state_dict", "backbone")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the flat tensor dict of a checkpoint file (no model involved)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] != b"PK" and magic[:1] != b"\x80":  # torch.save: a zip archive; legacy files: a pickle
        raise CheckpointError(f"{path}: not a checkpoint (neither a torch zip archive nor a pickle; first bytes "
                              f"{magic!r})")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: the file holds Python objects other than tensors and plain containers, and "
            f"loading it could run code (torch.load weights_only=True). If you trust it, re-save only its "
            f"state_dict. Details: {str(err).splitlines()[0]}") from err
    except Exception as err:  # truncated / not a torch file
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(err).__name__}: {err})") from err
    return _tensor_dict(obj, path)


def _tensor_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in NESTED_KEYS:
            if isinstance(obj.get(key), dict):
                return _tensor_dict(obj[key], path)
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    found = f"a dict with keys {list(obj)[:8]}" if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(f"{path}: no tensors found (expected a state dict or a dict with one of {NESTED_KEYS}; "
                          f"got {found})")


def detect_prefix(file_keys, model_keys) -> str:
    """The key prefix under which the file stores this model (the most frequent one whose suffixes match)."""
    model_keys = set(model_keys)
    counts: Counter[str] = Counter()
    for key in file_keys:
        if key in model_keys:
            counts[""] += 1
        for i, ch in enumerate(key):
            if ch == "." and key[i + 1:] in model_keys:
                counts[key[: i + 1]] += 1
    if counts:
        return max(counts, key=lambda p: (counts[p], -len(p)))
    return "model." if any(k.startswith("model.") for k in file_keys) else ""


def compare(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]):
    """(missing, unexpected, shape mismatches) of `state` against `reference`; BN batch counters may be absent."""
    missing = [k for k in reference if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in reference]
    mismatched = [(k, tuple(state[k].shape), tuple(reference[k].shape))
                  for k in state if k in reference and state[k].shape != reference[k].shape]
    return missing, unexpected, mismatched


def guess_architecture(file_state: dict[str, torch.Tensor]) -> tuple[str, float] | None:
    """Registered backbone whose keys and shapes best cover the file (built on the meta device: no memory)."""
    best = None
    for name in list_backbones():
        with torch.device("meta"):
            ref = build_backbone(name).state_dict()
        prefix = detect_prefix(file_state, ref)
        sub = {k[len(prefix):]: v for k, v in file_state.items() if k.startswith(prefix)}
        missing, unexpected, mismatched = compare(sub, ref)
        matched = len(ref) - len(missing) - len(mismatched)
        score = matched / (len(ref) + len(unexpected))
        if best is None or score > best[1]:
            best = (name, score)
    return best if best and best[1] > 0 else None


def _listing(title: str, items: list, limit: int = 8) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    more = f" ... (+{len(items) - limit} more)" if len(items) > limit else ""
    return f"\n  {title} ({len(items)}): {shown}{more}"


def load_pretrained(model: nn.Module, path: str | Path, strict: bool = True) -> dict:
    """Load backbone weights from `path` into `model`; returns {'prefix', 'loaded', 'skipped'}.

    strict=False loads the keys whose names and shapes fit and reports the others under 'skipped'.
    """
    path = Path(path)
    file_state = read_state_dict(path)
    reference = model.state_dict()
    prefix = detect_prefix(file_state, reference)
    state = {k[len(prefix):]: v for k, v in file_state.items() if k.startswith(prefix)}
    missing, unexpected, mismatched = compare(state, reference)
    if strict and (missing or unexpected or mismatched):
        name = getattr(model, "meta", {}).get("name", type(model).__name__)
        msg = (f"{path} does not fit backbone {name!r} (keys read under prefix {prefix!r}): "
               f"{len(missing)} missing, {len(unexpected)} unexpected, {len(mismatched)} shape mismatches")
        if missing:
            msg += _listing("missing", missing)
        if unexpected:
            msg += _listing("unexpected", unexpected)
        if mismatched:
            msg += _listing("shape mismatch [file vs model]", [f"{k} {a} vs {b}" for k, a, b in mismatched])
        guess = guess_architecture(file_state)
        if guess:
            verdict = "exactly" if guess[1] == 1.0 else f"closest, {guess[1]:.0%} of keys and shapes"
            msg += f"\nThe file looks like backbone {guess[0]!r} ({verdict}): build_backbone({guess[0]!r})."
        raise CheckpointError(msg)
    bad = {k for k, _, _ in mismatched}
    fitting = {k: v for k, v in state.items() if k in reference and k not in bad}
    for key in reference:  # old files may lack BN batch counters; keep the model's own
        if key.endswith("num_batches_tracked") and key not in fitting:
            fitting[key] = reference[key]
    model.load_state_dict(fitting, strict=strict)
    return {"prefix": prefix, "loaded": len(fitting), "skipped": sorted(set(missing) | set(unexpected) | bad)}
