"""task=embed: detect, align and embed every photo under a folder (the library is `inference`).

    python main.py task=embed input_dir=photos/ checkpoint=adaface_ir50_ms1mv2.ckpt backbone=ir_50
    python -m tasks.embed photos/ --checkpoint ... --arch ir_50
"""

from __future__ import annotations

from inference.backends import Backend, OnnxBackend, TorchBackend, build_backend  # noqa: F401  (re-exported)
from inference.embedder import EmbedOutput, embed_images, list_images, run_embed, write_skipped  # noqa: F401
from inference.faces import ALIGN_MODES, FaceAligner, FaceCrop  # noqa: F401
from models import backbone_arguments


def run_embed_task(cfg) -> dict:
    """`python main.py task=embed input_dir=... checkpoint=... output_dir=...` (top-level keys or `embed.*`)."""
    e = cfg.embed
    input_dir = cfg.get("input_dir") or e.input_dir
    if input_dir is None:
        raise ValueError("task=embed needs input_dir=<folder or image> (or embed.input_dir=...)")
    return run_embed(input_dir, cfg.get("output_dir") or e.output_dir, batch_size=e.batch_size,
                     checkpoint=cfg.checkpoint, arch=cfg.backbone.name, mtcnn_weights=e.mtcnn_weights, align=e.align,
                     device=e.device, backbone_kwargs=backbone_arguments(cfg.backbone))


def main(argv=None) -> None:
    import argparse

    p = argparse.ArgumentParser(description="Detect, align and embed face photos.")
    p.add_argument("input_dir")
    p.add_argument("--output-dir", default="results")
    p.add_argument("--checkpoint", help="torch checkpoint (ours, AdaFace .ckpt, InsightFace .pth) or .onnx")
    p.add_argument("--arch", default="ir_50")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--mtcnn-weights")
    p.add_argument("--align", choices=ALIGN_MODES, default="auto")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    run_embed(a.input_dir, a.output_dir, batch_size=a.batch_size, checkpoint=a.checkpoint, arch=a.arch,
              mtcnn_weights=a.mtcnn_weights, align=a.align, device=a.device)


if __name__ == "__main__":
    main()
