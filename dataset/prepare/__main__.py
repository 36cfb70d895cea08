"""Turn raw TinyFace, SCface and IJB-B/C downloads into the packed evaluation sets validation reads.

    python -m dataset.prepare tinyface --root /data/tinyface --out /data/val
    python -m dataset.prepare scface   --root /data/scface   --out /data/val [--layout lex,ley,rex,rey,nx,ny,mx,my]
    python -m dataset.prepare ijb      --root /data/IJBB     --out /data/val        # or IJBC; set name from meta/
    python -m dataset.prepare folders  --root photos/ --out aligned/ [--landmarks FILE | --align none]

The first three write ``<out>/<tinyface|scface|ijbb|ijbc>/`` (``images.rec/.idx`` + ``meta.csv`` + protocol files, see
``dataset.evalsets``) and prints what was packed and skipped. ``folders`` turns ``photos/<identity>/<image>`` into
aligned 112x112 identity folders plus ``skipped.csv``
(docs/evaluation.md, "Your own faces: preparation (`dataset.prepare folders`, `data=folders`)").
"""

from __future__ import annotations

import argparse

from dataset.prepare.folders import FOLDER_ALIGN, prepare_folders
from dataset.prepare.ijb import prepare_ijb
from dataset.prepare.scface import SCFACE_LAYOUT, prepare_scface
from dataset.prepare.summary import Summary
from dataset.prepare.tinyface import prepare_tinyface


def main(argv=None) -> Summary:
    parser = argparse.ArgumentParser(prog="python -m dataset.prepare", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="dataset", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", required=True, help="the dataset's download folder")
    common.add_argument("--out", required=True, help="validation root; the set goes to <out>/<set name>")
    common.add_argument("--workers", type=int, default=1, help="processes for decoding/aligning")

    tf = sub.add_parser("tinyface", parents=[common], help="TinyFace (aligned release, or raw + MTCNN)")
    tf.add_argument("--source", choices=("auto", "aligned", "raw"), default="auto")
    tf.add_argument("--mtcnn-weights", help="MTCNN weights for raw images (default: $FACE_MTCNN_WEIGHTS or cache)")
    tf.add_argument("--min-face-size", type=float, default=20.0)

    sc = sub.add_parser("scface", parents=[common], help="SCface (all.txt landmarks, 4-point template)")
    sc.add_argument("--landmarks", default="all.txt", help="landmark file relative to --root")
    sc.add_argument("--images-dir", default="images", help="image folder relative to --root (<id><ext> inside)")
    sc.add_argument("--image-ext", default=".jpg")
    sc.add_argument("--layout", default=SCFACE_LAYOUT, help="names of the columns after the id (see docs)")
    sc.add_argument("--passthrough", action="store_true", help="images are already aligned: do not warp")

    ij = sub.add_parser("ijb", parents=[common], help="IJB-B / IJB-C (loose_crop + meta/)")
    ij.add_argument("--name", choices=("ijbb", "ijbc"), help="default: from the meta/ file names")

    fo = sub.add_parser("folders", parents=[common], help="your own photos: <root>/<identity>/<image> -> aligned "
                                                          "identity folders + skipped.csv")
    fo.add_argument("--align", choices=FOLDER_ALIGN, default="mtcnn",
                    help="mtcnn (detect), landmarks (with --landmarks), none (already aligned crops)")
    fo.add_argument("--landmarks", help="file of '<identity>/<image> x1 y1 ... x5 y5' lines: align without a detector")
    fo.add_argument("--mtcnn-weights", help="MTCNN weights (default: $FACE_MTCNN_WEIGHTS or cache)")
    fo.add_argument("--min-face-size", type=float, default=20.0)

    a = parser.parse_args(argv)
    if a.dataset == "tinyface":
        summary = prepare_tinyface(a.root, a.out, a.source, a.mtcnn_weights, a.min_face_size, a.workers)
    elif a.dataset == "scface":
        summary = prepare_scface(a.root, a.out, a.landmarks, a.images_dir, a.layout, a.image_ext, a.passthrough,
                                 a.workers)
    elif a.dataset == "folders":
        summary = prepare_folders(a.root, a.out, a.landmarks, a.align, a.mtcnn_weights, a.min_face_size, a.workers)
    else:
        summary = prepare_ijb(a.root, a.out, a.name, a.workers)
    print(summary.report())
    return summary


if __name__ == "__main__":
    main()
