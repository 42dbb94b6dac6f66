"""Embed images or class prompts with CLIP; rows of the output ``.npy`` follow the input.

    python -m augbench.embed images --manifest pool.csv --out pool.npy --model ViT-L-14 --pretrained laion2b_s32b_b82k
    python -m augbench.embed prompts --classes classes.txt --template "a photo of a {}" --out prompts.npy --model ...
    python -m augbench.embed captions --manifest pool.csv --out captions.npy --model ...

A large pool is embedded by several jobs: ``--shard k --shards n`` embeds the k-th of n
contiguous blocks of the manifest's rows (``augbench.collect embeddings`` joins them). A pool
listed in blocks of webdataset tars is named by its shard table (``augbench.pool table``):
``--shard k`` embeds the k-th listing.

Embeddings are L2-normalised float32, so inner product is cosine similarity.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from augbench.cli import add_settings, run, settings_from, start_logging, use_threads
from augbench.clip_settings import Clip, ImageEmbedding, encode_images
from augbench.embedding_files import save_embeddings
from augbench.files import read_classes
from augbench.pool_parts import manifest_block
from augbench.unreadable import unreadable_frame, write_unreadable

log = logging.getLogger(__name__)


def embed_images(
    manifest: str, out: str, clip: ImageEmbedding, shard: int = 0, shards: int = 1, unreadable: str | None = None
) -> np.ndarray:
    """Embed a manifest's images (one shard of its rows); an unreadable image gets a zero row,
    which retrieval never picks, and is listed with the reason in ``unreadable`` (a CSV)."""
    frame = manifest_block(manifest, shard, shards)
    features, why = encode_images(frame.path.tolist(), clip)
    bad = [reason != "" for reason in why]
    broken = unreadable_frame(frame[bad], [reason for reason in why if reason])
    save_embeddings(out, features)
    if unreadable:
        write_unreadable(unreadable, broken)
    return features


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    images = commands.add_parser("images", help="embed every image of a manifest")
    images.add_argument("--manifest", required=True)
    images.add_argument("--unreadable", help="CSV listing the images that could not be read, and why")
    add_settings(images, ImageEmbedding)
    prompts = commands.add_parser("prompts", help="embed one prompt per class")
    prompts.add_argument("--classes", required=True)
    prompts.add_argument("--template", default="a photo of a {}")
    captions = commands.add_parser("captions", help="embed the caption of every row of a manifest")
    captions.add_argument("--manifest", required=True)
    for sub in (prompts, captions):
        add_settings(sub, Clip)
    for sub in (images, captions):
        sub.add_argument("--shard", type=int, default=0, help="which block of the manifest's rows to embed")
        sub.add_argument("--shards", type=int, default=1, help="blocks the rows are split into")
    for sub in (images, prompts, captions):
        sub.add_argument("--out", required=True, help=".npy file to write")
        sub.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    start_logging()
    use_threads(args.threads)
    if args.command == "images":
        clip = settings_from(args, ImageEmbedding)
        features = embed_images(args.manifest, args.out, clip, args.shard, args.shards, args.unreadable)
    else:
        from augbench.clip_embeddings import embed_texts
        from augbench.prompts import class_prompts

        clip = settings_from(args, Clip)
        if args.command == "captions":
            frame = manifest_block(args.manifest, args.shard, args.shards)
            if "caption" not in frame:
                raise ValueError(f"manifest {args.manifest} has no 'caption' column")
            texts = frame.caption.astype(str).tolist()
        else:
            texts = class_prompts(read_classes(args.classes), args.template)
        features = embed_texts(texts, args.out, clip.model, clip.pretrained, clip.device)
    log.info("wrote %s embeddings of shape %s to %s", args.command, features.shape, args.out)


if __name__ == "__main__":
    run(main)
