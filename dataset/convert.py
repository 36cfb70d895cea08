"""Converters between image files, RecordIO packs and InsightFace verification `.bin` files.

- `make_rec`: QGFace-compatible packing of a list of image paths (key i = position i).
- `write_insightface_rec` / `pack_identity_folders`: InsightFace `train.rec`/`train.idx` (header0 + identity records).
- `unpack_rec`: a `.rec` back into `<out>/<label>/<key>.<ext>` image folders.
- `bin-info` / `bin-unpack`: verification `.bin` pickles (read and written by `dataset.formats`).

Every writer works under temporary names and renames the `.rec` first and the `.idx` last, so an interrupted run
never leaves a pair that looks complete. Command line: `python -m dataset.convert --help`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from common import atomic
from common.images import IMAGE_EXTENSIONS, is_image_file
from common.parallel import default_workers, ordered_map
from dataset import recordio
from dataset.formats import RecPairWriter, check_pack, encode_image, image_keys, label_to_int, load_bin, open_rec

_HEADER0_LABEL_SIZE = 2


# Packing runs OpenCV codecs on threads, which release the GIL and share the caller's memory: a higher cap than the
# synthetic renderer's forked processes (dataset.synthetic.jobs.RENDER_WORKER_CAP).
PACK_WORKER_CAP = 8


# ---------------------------------------------------------------- small helpers


def _image_ext(payload: bytes) -> str:
    if payload[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if payload[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if payload[:2] == b"BM":
        return ".bmp"
    return ".bin"


def _progress(iterable, total: int | None, desc: str, enabled: bool = True):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="img", dynamic_ncols=True)


# ---------------------------------------------------------------- QGFace make_rec


def make_rec(
    image_paths: Sequence,
    data_root,
    lab_func: Callable | None = None,
    dataset_name: str = "dataset",
    is_origin: bool = True,
    num_workers: int | None = None,
    quality: int = 95,
    progress: bool = True,
) -> tuple[Path, Path]:
    """Pack images into `<data_root>/<dataset_name>.rec/.idx` with QGFace's meaning.

    Record key i holds `image_paths[i]` with label `lab_func(path)` (or i) and IRHeader id i. `is_origin=True`
    stores the file's bytes verbatim; `False` decodes and re-encodes as JPEG with correct colours (unlike QGFace,
    which stored R/B-swapped JPEGs; read such old files with `swap_rb=True`). Relative paths are read relative to
    `data_root` when they exist there, else relative to the working directory. Returns (rec_path, idx_path).
    """
    data_root = Path(data_root)
    paths = list(image_paths)
    workers = default_workers(PACK_WORKER_CAP) if num_workers is None else num_workers

    def resolve(path) -> Path:
        p = Path(path)
        if not p.is_absolute() and (data_root / p).exists():
            return data_root / p
        return p

    def load(path) -> bytes:
        file = resolve(path)
        try:
            data = file.read_bytes()
        except OSError as e:
            raise OSError(f"make_rec: cannot read image {file}: {e}") from e
        if is_origin:
            return data
        import cv2

        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"make_rec: cannot decode image {file}")
        return encode_image(img, quality)

    with RecPairWriter(data_root, dataset_name) as writer:
        encoded = ordered_map(load, paths, workers, "threads")  # OpenCV codecs release the GIL
        for i, (path, payload) in enumerate(_progress(zip(paths, encoded), len(paths), dataset_name, progress)):
            label = lab_func(path) if lab_func is not None else i
            writer.write_idx(i, recordio.pack(recordio.IRHeader(0, label, i, 0), payload))
    return Path(data_root) / f"{dataset_name}.rec", Path(data_root) / f"{dataset_name}.idx"


# ---------------------------------------------------------------- InsightFace train.rec


def write_insightface_rec(
    out_dir,
    items: Iterable,
    name: str = "train",
    num_workers: int | None = None,
    quality: int = 95,
    total: int | None = None,
    progress: bool = False,
) -> dict:
    """Write an InsightFace training pack `<out_dir>/<name>.rec/.idx` from `(image, label)` pairs.

    `image` is a BGR uint8 array (encoded as JPEG at `quality`) or already-encoded bytes (stored verbatim).
    Items must be grouped by label (all images of one identity consecutive, each label one group). Layout:
    key 0 = header0 (label [N+1, N+1+C], empty payload), keys 1..N images (scalar label), keys N+1..N+C one
    record per identity group with label [first_key, end_key). Returns {'num_images': N, 'num_classes': C,
    'labels': list of group labels in order}.
    """
    workers = default_workers(PACK_WORKER_CAP) if num_workers is None else num_workers
    groups: list[tuple[int, int, int]] = []  # (label, first_key, end_key)
    seen: set[int] = set()
    items = iter(items)

    def encode(item):
        img, label = item
        return encode_image(img, quality), int(label)

    with RecPairWriter(out_dir, name) as writer:
        # header0 goes first with placeholder values; it has a fixed size, so it is patched in place at the end.
        placeholder = recordio.pack(recordio.IRHeader(0, [0.0, 0.0], 0, 0), b"")
        writer.write_idx(0, placeholder)
        key = 0
        for payload, label in _progress(ordered_map(encode, items, workers, "threads"), total, name, progress):
            key += 1
            if not groups or groups[-1][0] != label:
                if label in seen:
                    raise ValueError(f"write_insightface_rec: label {label} appears again at image {key}; "
                                     "items must be grouped by label")
                seen.add(label)
                groups.append((label, key, key))
            groups[-1] = (label, groups[-1][1], key + 1)
            writer.write_idx(key, recordio.pack(recordio.IRHeader(0, float(label), key, 0), payload))
        num_images = key
        for j, (_label, first, end) in enumerate(groups):
            ident_key = num_images + 1 + j
            writer.write_idx(ident_key, recordio.pack(recordio.IRHeader(0, [float(first), float(end)], 0, 0), b""))
        writer.close()  # flush before patching header0 in the temporary file (close is idempotent)
        header0 = recordio.pack(
            recordio.IRHeader(0, [float(num_images + 1), float(num_images + 1 + len(groups))], 0, 0), b""
        )
        framed, old = recordio.frame_record(header0), recordio.frame_record(placeholder)
        if len(framed) != len(old):  # cannot happen for positive float labels; guard the in-place patch anyway
            raise RuntimeError("header0 changed size; cannot patch in place")
        with open(writer.uri, "r+b") as f:
            f.write(framed)
    return {"num_images": num_images, "num_classes": len(groups), "labels": [g[0] for g in groups]}


def list_identity_folders(root) -> list[tuple[str, list[Path]]]:
    """Sorted `(identity, sorted image paths)` for `root/<identity>/<image>`; identities without images dropped."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    out = []
    for ident in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in ident.iterdir() if is_image_file(p))
        if files:
            out.append((ident.name, files))
    return out


def pack_identity_folders(root, out_dir, name: str = "train", num_workers: int | None = None,
                          progress: bool = True) -> dict:
    """Pack `root/<identity>/<image>` into an InsightFace `<out_dir>/<name>.rec/.idx`; file bytes stored as is.

    Labels are the positions of the identity folders in sorted order. Also writes `<name>_identities.txt`
    (label<TAB>folder name). Returns the stats of `write_insightface_rec`.
    """
    folders = list_identity_folders(root)
    if not folders:
        raise ValueError(f"{root}: no identity folders with images ({', '.join(IMAGE_EXTENSIONS)})")
    total = sum(len(files) for _, files in folders)
    items = ((path.read_bytes(), label) for label, (_, files) in enumerate(folders) for path in files)
    stats = write_insightface_rec(out_dir, items, name=name, num_workers=num_workers, total=total, progress=progress)
    names_path = Path(out_dir) / f"{name}_identities.txt"
    atomic.write_text(names_path, "".join(f"{label}\t{ident}\n" for label, (ident, _) in enumerate(folders)))
    return stats



def folder_content_key(root) -> str:
    """A digest of `root/<identity>/<image>`'s content (identity names, file names and bytes, in sorted order): the
    cache key of `pack_folders_cached`, so an edited folder is packed again and an unchanged one is reused."""
    import hashlib

    digest = hashlib.sha256()
    for ident, files in list_identity_folders(root):
        for path in files:
            digest.update(f"{ident}/{path.name}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def pack_folders_cached(root, cache_dir, progress: bool = True) -> Path:
    """`root/<identity>/<image>` packed once into `<cache_dir>/folders/<folder name>-<content key>/train.rec`
    (reused while the folder's content is unchanged); returns the `.rec` path. A `DONE` marker is written last."""
    root = Path(root)
    folders = list_identity_folders(root)
    if not folders:
        raise ValueError(f"data.root={root}: no identity folders with images ({', '.join(IMAGE_EXTENSIONS)}); "
                         "prepare photos with `python -m dataset.prepare folders --root photos/ --out aligned/`")
    target = Path(cache_dir) / "folders" / f"{root.resolve().name}-{folder_content_key(root)[:16]}"
    if not (target / "DONE").is_file():
        with atomic.staged_dir(target) as stage:
            pack_identity_folders(root, stage, name="train", progress=progress)
            atomic.write_json(stage / "DONE", {"root": str(root.resolve()), "identities": len(folders)})
    return target / "train.rec"


def unpack_rec(rec_path, out_dir, swap_rb: bool = False, limit: int | None = None, progress: bool = True) -> int:
    """Write every image record of `rec_path` to `<out_dir>/<label>/<key>.<ext>`; returns the image count.

    Bytes are copied verbatim unless `swap_rb` (for QGFace `is_origin=False` files), which decodes, swaps R/B
    and re-encodes."""
    out_dir = Path(out_dir)
    with open_rec(rec_path) as record:
        keys = image_keys(record)[:limit] if limit is not None else image_keys(record)
        for key in _progress(keys, len(keys), "unpack", progress):
            header, payload = recordio.unpack(record.read_idx(key))
            ext = _image_ext(payload)
            if swap_rb:
                import cv2

                img = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
                if img is None:
                    raise ValueError(f"{rec_path}: cannot decode image at key {key}")
                payload, ext = encode_image(img[..., ::-1]), ".jpg"
            folder = out_dir / str(label_to_int(header.label))
            folder.mkdir(parents=True, exist_ok=True)
            atomic.write_bytes(folder / f"{key}{ext}", payload, durable=False)
    return len(keys)


def _rec_info(rec_path, check: bool = False) -> tuple[str, bool]:
    """Summary of a pack and whether it is sound: its last record always, every record with check=True."""
    with open_rec(rec_path) as record:
        keys = image_keys(record)
        lines = [f"{rec_path}: {len(record.keys)} records, {len(keys)} images"]
        if keys and keys[0] != record.keys[0]:
            header, _ = recordio.unpack(record.read_idx(0))
            lines.append(f"header0 label: {header.label.tolist()} -> {int(header.label[1] - header.label[0])} "
                         "identity records")
        if keys:
            header, img = recordio.unpack_img(record.read_idx(keys[0]))
            shape = None if img is None else img.shape
            lines.append(f"first image: key {keys[0]} label {label_to_int(header.label)} shape {shape}")
        last_key = max(record.idx, key=record.idx.get) if record.idx else None
        if last_key is not None and not check:  # cheap: a truncated file fails on its last record
            try:
                recordio.unpack(record.read_idx(last_key))
            except recordio.RecordIOError as err:
                return "\n".join([*lines, f"BROKEN: {err} (run with --check to list every bad record)"]), False
    if check:
        checked, problems = check_pack(rec_path)
        if problems:
            return "\n".join([*lines, f"BROKEN: {len(problems)} bad record(s) among {checked} checked:",
                              *[f"  {p}" for p in problems]]), False
        lines.append(f"check: all {checked} records read and decode cleanly")
    return "\n".join(lines), True


def _bin_info(bin_path) -> str:
    import cv2

    bins, issame = load_bin(bin_path)
    img = cv2.imdecode(np.frombuffer(bins[0], np.uint8), cv2.IMREAD_COLOR) if bins else None
    shape = None if img is None else img.shape
    return f"{bin_path}: {len(issame)} pairs ({sum(issame)} same, {len(issame) - sum(issame)} different), " \
           f"{len(bins)} images, first image shape {shape}"


def _read_list(list_file) -> list[str]:
    with open(list_file) as f:
        return [line.strip() for line in f if line.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dataset.convert",
        description="Pack, unpack and inspect RecordIO (.rec/.idx) and verification .bin files.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-rec", help="QGFace make_rec: pack a list of images (key i = line i)")
    p.add_argument("list_file", help="text file with one image path per line (relative paths: see --data-root)")
    p.add_argument("--data-root", required=True, help="output folder; relative image paths are looked up here first")
    p.add_argument("--name", default="dataset", help="output stem: <data-root>/<name>.rec/.idx")
    p.add_argument("--label", choices=["index", "parent"], default="index",
                   help="label = position in the list (QGFace default) or the parent folder's index (sorted)")
    p.add_argument("--reencode", action="store_true", help="re-encode as JPEG instead of storing the file bytes")
    p.add_argument("--workers", type=int, default=default_workers(PACK_WORKER_CAP))

    p = sub.add_parser("pack-folders", help="pack root/<identity>/<image> into an InsightFace train.rec/.idx")
    p.add_argument("root")
    p.add_argument("out_dir")
    p.add_argument("--name", default="train")
    p.add_argument("--workers", type=int, default=default_workers(PACK_WORKER_CAP))

    p = sub.add_parser("unpack", help="write the images of a .rec into <out_dir>/<label>/<key>.<ext>")
    p.add_argument("rec")
    p.add_argument("out_dir")
    p.add_argument("--swap-rb", action="store_true", help="fix R/B of files made by QGFace with is_origin=False")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")

    p = sub.add_parser("rec-info", help="summarise a .rec/.idx pair (exit status 1 when it is broken)")
    p.add_argument("rec")
    p.add_argument("--check", action="store_true", help="read and decode every record; name the bad ones")

    p = sub.add_parser("bin-info", help="summarise a verification .bin (loaded safely)")
    p.add_argument("bin")

    p = sub.add_parser("bin-unpack", help="write the images of a verification .bin into a folder + pairs.txt")
    p.add_argument("bin")
    p.add_argument("out_dir")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "make-rec":
        paths = _read_list(args.list_file)
        lab_func = None
        if args.label == "parent":
            parents = {p: i for i, p in enumerate(sorted({str(Path(x).parent) for x in paths}))}
            lab_func = lambda path: parents[str(Path(path).parent)]  # noqa: E731
        rec, idx = make_rec(paths, args.data_root, lab_func=lab_func, dataset_name=args.name,
                            is_origin=not args.reencode, num_workers=args.workers)
        print(f"wrote {rec} and {idx} ({len(paths)} images)")
    elif args.command == "pack-folders":
        stats = pack_identity_folders(args.root, args.out_dir, name=args.name, num_workers=args.workers)
        print(f"wrote {Path(args.out_dir) / args.name}.rec/.idx: {stats['num_images']} images, "
              f"{stats['num_classes']} identities")
    elif args.command == "unpack":
        n = unpack_rec(args.rec, args.out_dir, swap_rb=args.swap_rb, limit=args.limit)
        print(f"wrote {n} images under {args.out_dir}")
    elif args.command == "rec-info":
        try:
            text, sound = _rec_info(args.rec, check=args.check)
        except (recordio.RecordIOError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(text)
        if not sound:
            return 1
    elif args.command == "bin-info":
        print(_bin_info(args.bin))
    elif args.command == "bin-unpack":
        bins, issame = load_bin(args.bin)
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for i, blob in enumerate(bins):
            atomic.write_bytes(out / f"{i:06d}{_image_ext(blob)}", blob, durable=False)
        pairs = "".join(f"{2 * k:06d} {2 * k + 1:06d} {int(s)}\n" for k, s in enumerate(issame))
        atomic.write_text(out / "pairs.txt", pairs)
        print(f"wrote {len(bins)} images and pairs.txt under {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
