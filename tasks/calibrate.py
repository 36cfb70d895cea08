"""task=calibrate: decision thresholds at target FARs for each 1:1 protocol of the configured validation, with
subject-bootstrap intervals, a held-out check, the feature norm's error-versus-discard curve and, with
`ensemble=...`, the score-level fusion of several models (docs/evaluation.md, "Threshold calibration,
error-versus-discard, score fusion (`task=calibrate`)").

    python main.py task=calibrate checkpoint=PATH [backbone=...] [validation=synthetic] [calibrate.embeddings_cache=F]
    python main.py task=calibrate ensemble=demo_pair ensemble.members.0.checkpoint=A ensemble.members.1.checkpoint=B

The model is a checkpoint or an ONNX file (embedded as by task=evaluate). Writes into output_dir (the run dir by
default): `thresholds.json` (the calibrated system: the model, or the fusion), `thresholds_<member>.json` per fusion
member, `calibration.md` (one table of every system and a DET plot per protocol), `det_<set>.png`,
`edc_<system>_<set>.png`.
The maths live in `validation.calibration`, `validation.edc` and `validation.score_fusion`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from common import atomic
from inference.model_identity import model_identity
from tasks.evaluate import embed_sets, load_embeddings, save_embeddings
from tasks.run_info import write_run_info
from tasks.train import build_suite
from validation import report
from validation.calibration import calibrate, split_masks, subsample_subjects
from validation.edc import edc
from validation.protocols import SetEmbeddings
from validation.score_fusion import fuse_scores

log = logging.getLogger(__name__)


def member_specs(cfg: DictConfig) -> list[dict]:
    """[{name, checkpoint, backbone (node), embeddings_cache}]: the ensemble members, or the run's model alone."""
    backbone = OmegaConf.to_container(cfg.backbone, resolve=True)
    members = OmegaConf.to_container(cfg.ensemble.members, resolve=True) if cfg.get("ensemble") else []
    if not members:
        if cfg.checkpoint is None:
            raise ValueError("task=calibrate needs checkpoint=<checkpoint or .onnx> (its sha256 names the model in "
                             "thresholds.json), or ensemble members")
        return [{"name": "model", "checkpoint": cfg.checkpoint, "backbone": backbone,
                 "embeddings_cache": cfg.calibrate.embeddings_cache}]
    out = []
    for i, m in enumerate(members):
        node = m.get("backbone")
        node = backbone if node is None else ({"name": node} if isinstance(node, str) else node)
        out.append({"name": str(m.get("name") or f"member{i + 1}"), "checkpoint": m["checkpoint"], "backbone": node,
                    "embeddings_cache": m.get("embeddings_cache")})
    if len({m["name"] for m in out}) != len(out):
        raise ValueError(f"ensemble member names must differ: {[m['name'] for m in out]}")
    return out


def member_embeddings(cfg: DictConfig, suite, member: dict) -> dict:
    """Per-set embeddings of one member: from its cache file when it exists, else embedded (and cached)."""
    cache = Path(member["embeddings_cache"]) if member["embeddings_cache"] else None
    if cache is not None and cache.is_file():
        log.info("%s: cached embeddings %s", member["name"], cache)
        return load_embeddings(cache, list(suite.names))
    sub = cfg.copy()
    with open_dict(sub):
        sub.checkpoint = member["checkpoint"]
        sub.backbone = member["backbone"]
    _, per_set, _ = embed_sets(sub, suite, keep=True)
    if cache is not None:
        save_embeddings(cache, per_set)
    return per_set


def calibrate_system(pairs_by_set: dict, c: DictConfig, out_dir: Path, label: str) -> dict:
    """Calibrate one system on every protocol; EDC of the feature norm where the pairs carry qualities."""
    results = {}
    for name, pairs in pairs_by_set.items():
        res = calibrate(pairs, list(c.fars), c.replicates, c.confidence, c.seed, c.heldout)
        if c.edc and pairs.quality is not None:
            resolved = [e for e in res["entries"] if e["threshold"] is not None]
            at = next((e for e in resolved if abs(e["far"] - c.edc_far) < 1e-15), None) or \
                (min(resolved, key=lambda e: e["far"]) if resolved else None)
            if at is not None:
                res["edc"] = {"far": at["far"], **edc(pairs, at["threshold"], c.max_discard,
                                                      target_fnmr=c.target_fnmr, seed=c.seed)}
                report.save_edc_png(res["edc"], out_dir / f"edc_{label}_{name}.png",
                                    title=f"{name}: EDC at FAR {report.far_label(at['far'])} ({label})")
        results[name] = res
    return results


def thresholds_document(model: dict, results: dict, skipped: dict, c: DictConfig) -> dict:
    return {"model": model, "fars": [float(f) for f in c.fars], "replicates": int(c.replicates),
            "confidence": float(c.confidence), "seed": int(c.seed), "subject_fraction": float(c.subject_fraction),
            "protocols": results, "skipped": skipped}


def run(cfg: DictConfig) -> dict:
    suite = build_suite(cfg)
    if suite is None:
        raise ValueError("task=calibrate: validation.sets is empty; choose validation=synthetic|hq|real or set it")
    c = cfg.calibrate
    out_dir = Path(cfg.output_dir)
    fusion = suite.fusion
    members = member_specs(cfg)
    identities, scored, skipped = {}, {}, {}
    for member in members:
        identities[member["name"]] = model_identity(member["checkpoint"], member["backbone"]["name"], fusion,
                                                    _backbone_kwargs(member["backbone"]))
        per_set = member_embeddings(cfg, suite, member)
        scored[member["name"]] = {}
        for protocol in suite.protocols:
            e = per_set[protocol.name]
            pairs = protocol.pair_scores(SetEmbeddings(e["emb"], e["norm"], e["emb_flip"], e["norm_flip"]), fusion)
            if pairs is None:
                skipped[protocol.name] = "identification-only protocol: no 1:1 pairs to calibrate"
                continue
            scored[member["name"]][protocol.name] = subsample_subjects(pairs, c.subject_fraction, c.seed)
        del per_set
    for name, why in skipped.items():
        log.info("calibration skips %s: %s", name, why)

    systems = {m: calibrate_system(scored[m], c, out_dir, m) for m in scored}
    documents = {m: thresholds_document(identities[m], systems[m], skipped, c) for m in scored}
    pairs_for_det = {m: scored[m] for m in scored}
    if len(members) > 1:
        names = [m["name"] for m in members]
        weights = None if cfg.ensemble.weights is None else list(cfg.ensemble.weights)
        fused_sets, fusion_info = {}, {}
        for set_name in scored[names[0]]:
            member_pairs = [scored[n][set_name] for n in names]
            calib, _ = split_masks(member_pairs[0], c.seed)
            fused_sets[set_name], fusion_info[set_name] = fuse_scores(member_pairs, calib, weights, c.seed)
        systems["fusion"] = calibrate_system(fused_sets, c, out_dir, "fusion")
        model = {"members": [identities[n] for n in names], "member_names": names, "fusion": fusion_info}
        documents["fusion"] = thresholds_document(model, systems["fusion"], skipped, c)
        pairs_for_det["fusion"] = fused_sets
        atomic.write_json(out_dir / "thresholds.json", documents["fusion"])
        for n in names:
            atomic.write_json(out_dir / f"thresholds_{n}.json", documents[n])
    else:
        atomic.write_json(out_dir / "thresholds.json", documents[members[0]["name"]])

    write_run_info(cfg, out_dir)
    text = write_report(systems, pairs_for_det, skipped, out_dir)
    print(f"\n{text}\nwritten to {out_dir}")
    return documents


def _backbone_kwargs(node: dict) -> dict:
    from models import backbone_arguments

    return backbone_arguments(node)


def write_report(systems: dict, pairs_for_det: dict, skipped: dict, out_dir: Path) -> str:
    """calibration.md: per protocol one table of every system (same FARs, intervals) and its DET plot."""
    set_names = list(next(iter(systems.values())))
    parts = ["# Threshold calibration\n"]
    for set_name in set_names:
        res = {label: systems[label][set_name] for label in systems}
        first = next(iter(res.values()))
        parts.append(f"## {set_name}\n\n{first['pairs']:,} pairs ({first['genuines']:,} genuine, "
                     f"{first['impostors']:,} impostor); {first['pair_source']}; bootstrap over "
                     f"{first['bootstrap']}" + (f" ({first['subjects']:,} subjects)" if first["subjects"] else "")
                     + f", B = {first['replicates']}, {first['confidence']:.0%} percentile intervals.\n")
        parts.append(report.calibration_table(res))
        curves = {label: report.det_points(pairs_for_det[label][set_name].scores,
                                           pairs_for_det[label][set_name].labels) for label in res}
        markers = {label: [(e["far"], e["frr"]) for e in r["entries"] if e["threshold"] is not None]
                   for label, r in res.items()}
        png = report.save_det_png(curves, out_dir / f"det_{set_name}.png", f"{set_name} DET", markers)
        parts.append(f"\n![DET {set_name}]({png.name})\n")
        edc_rows = [[label, r["edc"]["pauc_quality"], r["edc"]["pauc_random"],
                     None if r["edc"]["quality_threshold"] is None else r["edc"]["quality_threshold"]["quality"]]
                    for label, r in res.items() if "edc" in r]
        if edc_rows:
            parts.append("\nEDC (FNMR vs discarded fraction, partial area up to "
                         f"{first['edc']['max_discard']:.0%}):\n\n"
                         + report.markdown_table(["system", "pAUC norm", "pAUC random", "quality threshold"],
                                                 edc_rows, ".4f"))
    for name, why in skipped.items():
        parts.append(f"\n{name}: skipped ({why})\n")
    text = "\n".join(parts)
    atomic.write_text(out_dir / "calibration.md", text)
    return text
