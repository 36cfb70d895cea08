"""ONNX export of a backbone with a dynamic batch axis and two outputs: `embedding` (unit, [N,512]) and `norm`
([N,1], the quality score). The export is checked with onnxruntime against PyTorch on the same inputs.

    python -m deploy.export --backbone ir_50 --checkpoint adaface_ir50_ms1mv2.ckpt --out ir50.onnx
    python -m deploy.export ... --out m.onnx --int8 --calibration train.rec [--fp16]   # + m_int8.onnx, m_fp16.onnx

INT8 / fp16 versions and their check on held-out faces: deploy.quantize
(docs/deployment.md, "Quantized and half-precision ONNX").

The ONNX input `input` is the *normalised* float image [N,3,112,112] in the colour order of the model
(metadata_props `color`, `mean`, `std`, `input_size` say which); `models.preprocess` makes it from uint8 BGR.
torch 2.13 exports through dynamo (needs onnxscript) with `dynamic_shapes`.
"""

import argparse
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common import atomic
from deploy.defaults import CALIBRATION_COUNT, CHECK_COUNT, OPSET
from deploy.onnx_graph import strip_debug_metadata

TOLERANCE = 1e-4


class _ExportWrapper(nn.Module):
    """Plain tuple outputs (embedding, norm) in fp32 for any backbone."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: A002  (ONNX input name)
        emb, norm = self.backbone(input)
        return emb, norm


def check_onnx(model: nn.Module, path: str | Path | bytes, batch_sizes=(1, 3), seed: int = 0,
               name: str | None = None) -> float:
    """Max abs difference of the embedding between onnxruntime and PyTorch over a few batch sizes (`path`: a file or
    the serialized model); raises on non-finite outputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(path if isinstance(path, bytes) else str(path), providers=["CPUExecutionProvider"])
    path = name or path
    size = getattr(model, "meta", {}).get("input_size", 112)
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    for n in batch_sizes:
        x = torch.rand(n, 3, size, size, generator=g) * 2 - 1
        with torch.no_grad():
            emb, norm = model(x)
        ort_emb, ort_norm = session.run(["embedding", "norm"], {"input": x.numpy()})
        if ort_emb.shape != tuple(emb.shape) or ort_norm.shape != tuple(norm.shape):
            raise RuntimeError(f"{path}: ONNX output shapes {ort_emb.shape}, {ort_norm.shape} differ from "
                               f"PyTorch {tuple(emb.shape)}, {tuple(norm.shape)} at batch {n}")
        for name, out in (("PyTorch", emb.numpy()), ("onnxruntime", ort_emb), ("onnxruntime norm", ort_norm)):
            if not np.isfinite(out).all():  # max(0.0, nan) is 0.0: a NaN model would otherwise "match"
                raise RuntimeError(f"{path}: non-finite {name} output at batch {n} (weights with NaN/Inf?)")
        worst = max(worst, float(np.abs(ort_emb - emb.numpy()).max()))
    return worst


def export_onnx(model: nn.Module, path: str | Path, opset: int = OPSET, check: bool = True,
                tolerance: float = TOLERANCE, verbose: bool = True) -> dict:
    """Export `model` (a registered backbone) to `path`; returns {'path', 'max_abs_diff'}.

    The model is exported in eval mode on CPU in fp32 (the caller's model is left in eval mode on CPU).
    Raises RuntimeError when the onnxruntime check exceeds `tolerance`.
    """

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.float().cpu().eval()
    meta = getattr(model, "meta", {})
    size = meta.get("input_size", 112)
    example = (torch.rand(2, 3, size, size) * 2 - 1,)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter is chatty about internals users cannot act on
        program = torch.onnx.export(
            _ExportWrapper(model), example, dynamo=True, opset_version=opset,
            input_names=["input"], output_names=["embedding", "norm"],
            dynamic_shapes={"input": {0: batch}}, verbose=False,
        )
    proto = strip_debug_metadata(program.model_proto)  # written once, atomically, with the metadata below
    for key, value in meta.items():  # consumers read colour order and normalisation from the file itself
        proto.metadata_props.add(key=str(key), value=str(value))
    serialized = proto.SerializeToString()

    result = {"path": str(path), "max_abs_diff": None}
    if check:  # before publishing: a model that fails the check never lands under `path`
        diff = check_onnx(model, serialized, name=str(path))
        result["max_abs_diff"] = diff
        status = "OK" if diff <= tolerance else "FAILED"
        if verbose:
            print(f"onnxruntime check: max |embedding diff| = {diff:.2e} (tolerance {tolerance:.0e}) {status}")
        if diff > tolerance:
            raise RuntimeError(f"{path}: onnxruntime differs from PyTorch by {diff:.2e} > {tolerance:.0e}")
    atomic.write_bytes(path, serialized)
    return result


def export_artifacts(model: nn.Module, out, opset: int = OPSET, check: bool = True, int8: bool = False,
                     fp16: bool = False, calibration=None, calibration_count: int = CALIBRATION_COUNT,
                     check_count: int = CHECK_COUNT, seed: int = 0, min_cosine: float | None = None,
                     verbose: bool = True) -> dict:
    """fp32 ONNX at `out`, and with `int8` / `fp16` its quantized / half versions beside it (`<stem>_int8.onnx`,
    `<stem>_fp16.onnx`), each compared with fp32 torch on `check_count` held-out faces of `calibration` (drawn
    disjoint from the `calibration_count` calibration faces). Returns {precision: result}."""
    from deploy import quantize

    out = Path(out)
    results = {"fp32": export_onnx(model, out, opset=opset, check=check, verbose=verbose)}
    results["fp32"]["size_mb"] = out.stat().st_size / 1e6
    if not (int8 or fp16 or calibration):
        return results
    if calibration is None:
        if int8:
            raise ValueError("--int8 needs --calibration <.rec or folder of aligned faces>")
        if check:
            raise ValueError("the fp16 check compares with torch on held-out faces: give --calibration <source> "
                             "(or --no-check)")
    size = model.meta.get("input_size", 112)
    faces = quantize.read_faces(calibration, (calibration_count if int8 else 0) + check_count, size, seed) \
        if calibration is not None else None
    calib, held_out = (faces[:calibration_count], faces[calibration_count:]) if int8 else (None, faces)
    held_out = held_out if check else None
    if held_out is not None:
        results["fp32"]["check"] = quantize.compare_with_torch(model, out, held_out, str(out))
        if verbose:
            c = results["fp32"]["check"]
            print(f"fp32 check on {c['faces']} held-out faces: cosine mean {c['cosine_mean']:.6f}, min "
                  f"{c['cosine_min']:.6f}")
    if int8:
        data = quantize.quantize_int8(out, quantize.model_inputs(calib, model.meta))
        results["int8"] = quantize.write_artifact(model, data, out.with_name(f"{out.stem}_int8.onnx"), "int8",
                                                  held_out, min_cosine, verbose)
    if fp16:
        results["fp16"] = quantize.write_artifact(model, quantize.convert_fp16(out),
                                                  out.with_name(f"{out.stem}_fp16.onnx"), "fp16", held_out,
                                                  None, verbose)
    return results


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="Export a face backbone to ONNX and check it with onnxruntime.")
    parser.add_argument("--backbone", required=True, help="registered backbone name, e.g. ir_50, mobilefacenet")
    parser.add_argument("--checkpoint", default=None, help="AdaFace .ckpt, our Lightning .ckpt, .pt/.pth, .safetensors")
    parser.add_argument("--out", required=True, help="output .onnx path")
    parser.add_argument("--opset", type=int, default=OPSET)
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    parser.add_argument("--int8", action="store_true", help="also <out stem>_int8.onnx: static QDQ quantization")
    parser.add_argument("--fp16", action="store_true", help="also <out stem>_fp16.onnx: half precision")
    parser.add_argument("--calibration", default=None, help=".rec pack or folder of aligned faces: calibration and "
                                                            "held-out check faces")
    parser.add_argument("--calibration-count", type=int, default=CALIBRATION_COUNT, help="faces for INT8 calibration")
    parser.add_argument("--check-count", type=int, default=CHECK_COUNT, help="held-out faces for the cosine check")
    parser.add_argument("--min-cosine", type=float, default=None,
                        help="INT8 acceptance: mean cosine to fp32 torch (default 0.99)")
    parser.add_argument("--seed", type=int, default=0, help="random weights (no --checkpoint) and face sampling")
    args = parser.parse_args(argv)
    logging.getLogger("torch").setLevel(logging.ERROR)
    for name, value in (("--calibration-count", args.calibration_count), ("--check-count", args.check_count)):
        if value < 1:
            parser.error(f"{name} must be >= 1")

    from models import build_backbone, load_pretrained

    with torch.random.fork_rng():  # without a checkpoint the weights are random: the same file on every run
        torch.manual_seed(args.seed)
        model = build_backbone(args.backbone)
    if args.checkpoint:
        load_pretrained(model, args.checkpoint)
        print(f"loaded {args.checkpoint}")
    results = export_artifacts(model, args.out, opset=args.opset, check=not args.no_check, int8=args.int8,
                               fp16=args.fp16, calibration=args.calibration,
                               calibration_count=args.calibration_count, check_count=args.check_count,
                               seed=args.seed, min_cosine=args.min_cosine)
    print(f"wrote {args.out} (input: normalised {model.meta['color']} float [N,3,{model.meta['input_size']},"
          f"{model.meta['input_size']}]; outputs: embedding [N,{model.meta['embedding_size']}], norm [N,1])")
    print_artifacts(results)
    return results


def print_artifacts(results: dict) -> None:
    """One line per artifact beside the fp32 export (what export_artifacts returned)."""
    for precision, r in results.items():
        if precision != "fp32":
            print(f"wrote {r['path']} ({precision}, {r['size_mb']:.2f} MB)")


if __name__ == "__main__":
    main()
