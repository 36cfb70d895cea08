"""Does the feature norm track image quality during training? A callback that measures it every epoch.

For a level-labelled held-out probe (`dataset.synthetic.probe`: the same unseen faces at hq, high, mid, low, tiny) it
records the feature-norm distribution per level (mean, sd, 10/50/90th percentiles), together with the AdaFace head's
norm EMA (`batch_mean`, `batch_std`, which turn norms into QGFace's quality) and, for the QGFace objective, the epoch
means of the fractions gated out of classification and selected for contrastive pairs. Logged as `quality/*`, kept in
`<out_dir>/quality_signal.json` (history survives resume) and drawn in `<out_dir>/quality_norms.png`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from pytorch_lightning.callbacks import Callback

from common import atomic

GATE_METRICS = ("qg/cls_gated_out", "qg/pairs_selected")


class QualitySignal(Callback):
    def __init__(self, out_dir, identities: int = 16, preset: str = "demo", seed: int = 0, batch_size: int = 128):
        self.out_dir = Path(out_dir)
        self.identities, self.preset, self.seed, self.batch_size = int(identities), preset, int(seed), int(batch_size)
        self.images: torch.Tensor | None = None
        self.levels: list[str] = []
        self.history: list[dict] = []
        self._gates: dict[str, list[float]] = {}

    @property
    def json_path(self) -> Path:
        return self.out_dir / "quality_signal.json"

    def on_fit_start(self, trainer, pl_module) -> None:
        from dataset.synthetic.probe import quality_probe

        images, self.levels = quality_probe(self.identities, self.preset, self.seed)
        self.images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        epoch = trainer.current_epoch
        if self.json_path.is_file():  # a resumed run keeps the epochs it already measured
            self.history = [e for e in json.loads(self.json_path.read_text()) if e["epoch"] < epoch]

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._gates = {name: [] for name in GATE_METRICS}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for name in GATE_METRICS:
            value = trainer.callback_metrics.get(name)
            if value is not None:
                self._gates[name].append(float(value))

    @torch.no_grad()
    def norms(self, pl_module) -> np.ndarray:
        was_training = pl_module.training
        pl_module.eval()
        try:
            parts = [pl_module(self.images[i:i + self.batch_size].to(pl_module.device))[1].float().cpu()
                     for i in range(0, len(self.images), self.batch_size)]
        finally:
            pl_module.train(was_training)
        return torch.cat(parts).reshape(-1).numpy()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        norms, levels = self.norms(pl_module), np.array(self.levels)
        entry = {"epoch": int(trainer.current_epoch), "step": int(trainer.global_step), "norm": {}}
        for level in dict.fromkeys(self.levels):
            values = norms[levels == level]
            p10, p50, p90 = np.percentile(values, [10, 50, 90])
            entry["norm"][level] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)),
                                    "p10": float(p10), "p50": float(p50), "p90": float(p90)}
            pl_module.log(f"quality/norm_{level}", float(values.mean()), sync_dist=False)
        head = getattr(pl_module, "head", None)
        for key in ("batch_mean", "batch_std"):
            if head is not None and hasattr(head, key):
                entry[f"ema_{key.split('_')[1]}"] = float(getattr(head, key).float().mean())
        for name, values in self._gates.items():
            if values:
                entry[name.split("/")[1]] = float(np.mean(values))
        self.history.append(entry)
        if trainer.is_global_zero:
            atomic.write_json(self.json_path, self.history)
            plot_quality_signal(self.history, self.out_dir / "quality_norms.png")


def plot_quality_signal(history: list[dict], path) -> Path:
    """Left: feature norm by quality level over epochs (mean, 10-90th percentile band); right: the AdaFace norm EMA
    and the QGFace gate fractions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [e["epoch"] + 1 for e in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for level in history[0]["norm"]:
        mean = [e["norm"][level]["mean"] for e in history]
        left.plot(epochs, mean, marker="o", label=level)
        left.fill_between(epochs, [e["norm"][level]["p10"] for e in history],
                          [e["norm"][level]["p90"] for e in history], alpha=0.15)
    left.set(xlabel="epoch", ylabel="feature norm", title="norm of held-out faces by quality level")
    lows = [e["norm"][lv]["p10"] for e in history for lv in e["norm"]]
    highs = [e["norm"][lv]["p90"] for e in history for lv in e["norm"]]
    if min(lows) > 0 and max(highs) / min(lows) > 20:  # early epochs can sit orders of magnitude higher
        left.set_yscale("log")
    left.legend(fontsize="small")
    left.grid(True, alpha=0.3)
    if "ema_mean" in history[0]:
        right.plot(epochs, [e["ema_mean"] for e in history], marker="o", label="AdaFace EMA mean")
        right.plot(epochs, [e["ema_std"] for e in history], marker="o", label="AdaFace EMA std")
    right.set(xlabel="epoch", ylabel="norm statistics", title="norm EMA and QGFace gates")
    right.grid(True, alpha=0.3)
    gates = right.twinx()
    for key, style in (("cls_gated_out", "--"), ("pairs_selected", ":")):
        if any(key in e for e in history):
            gates.plot(epochs, [100 * e.get(key, np.nan) for e in history], style, marker="s", label=key)
    gates.set_ylabel("% of samples / pairs")
    for ax in (left, right):
        ax.set_xticks(epochs)  # whole epochs: the signal is measured once per epoch
    handles = right.get_legend_handles_labels()[0] + gates.get_legend_handles_labels()[0]
    right.legend(handles, [h.get_label() for h in handles], fontsize="small", loc="upper left")
    fig.tight_layout()
    with atomic.atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
