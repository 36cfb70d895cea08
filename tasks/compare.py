"""task=compare: cosine similarity between face photos (the library is `inference.compare`).

    python main.py task=compare 'compare.paths_a=[a.jpg,b.jpg]' checkpoint=... backbone=ir_50
    python -m tasks.compare a.jpg b.jpg --checkpoint ... [--thresholds thresholds.json --far 1e-3]
"""

from __future__ import annotations

from inference.compare import run_compare, save_heatmap  # noqa: F401  (re-exported: tasks.compare.run_compare)
from models import backbone_arguments


def run_compare_task(cfg) -> dict:
    """`python main.py task=compare compare.paths_a=... [compare.paths_b=...] checkpoint=... [output_dir=...]`."""
    from omegaconf import OmegaConf

    c = OmegaConf.to_container(cfg.compare, resolve=True)
    if c["paths_a"] is None:
        raise ValueError("task=compare needs compare.paths_a=<folder/image or [list]> (and optionally paths_b)")
    return run_compare(c["paths_a"], c["paths_b"], cfg.get("output_dir") or c["output_dir"],
                       checkpoint=cfg.checkpoint, arch=cfg.backbone.name, batch_size=c["batch_size"],
                       mtcnn_weights=c["mtcnn_weights"], align=c["align"], device=c["device"],
                       backbone_kwargs=backbone_arguments(cfg.backbone), thresholds=c["thresholds"], far=c["far"],
                       protocol=c["protocol"])


def main(argv=None) -> None:
    import argparse

    p = argparse.ArgumentParser(description="Cosine similarity between face photos.")
    p.add_argument("paths_a", nargs="+", help="images or folders")
    p.add_argument("--against", nargs="+", help="second set of images/folders (default: A against itself)")
    p.add_argument("--output-dir", default="results")
    p.add_argument("--checkpoint")
    p.add_argument("--arch", default="ir_50")
    p.add_argument("--mtcnn-weights")
    p.add_argument("--device", default="cpu")
    p.add_argument("--thresholds", help="thresholds.json of task=calibrate for this model: print decisions")
    p.add_argument("--far", type=float, default=1e-3, help="the calibrated FAR whose threshold decides")
    a = p.parse_args(argv)
    run_compare(a.paths_a, a.against, a.output_dir, checkpoint=a.checkpoint, arch=a.arch,
                mtcnn_weights=a.mtcnn_weights, device=a.device, thresholds=a.thresholds, far=a.far)


if __name__ == "__main__":
    main()
