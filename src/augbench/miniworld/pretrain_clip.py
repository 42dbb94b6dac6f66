"""Pre-train the mini-world's CLIP: an open_clip model of a small custom config,
trained contrastively on a captioned pool and saved as an open_clip folder
(``open_clip_config.json`` + ``open_clip_model.safetensors``).

Every stage then loads it exactly as it loads OpenCLIP ViT-L/14 on a cluster, through
``open_clip.create_model_and_transforms("local-dir:<folder>")``.

    python -m augbench.miniworld.pretrain_clip --pool pool.csv --out models/clip --image-size 16 --steps 800
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

from augbench.cli import run, start_logging, use_threads
from augbench.images import load_captioned_images
from augbench.optim import warmup_cosine
from augbench.pretraining_sizes import PATCH_SIZE

log = logging.getLogger(__name__)

# open_clip's own defaults, so the saved preprocess config matches what it would pick.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def model_config(
    image_size: int, vision_width: int, text_width: int, layers: int, embed_dim: int, context_length: int
) -> dict:
    if image_size % PATCH_SIZE:
        raise ValueError(f"image size {image_size} is not a multiple of CLIP's {PATCH_SIZE}-pixel patches")
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {
            "image_size": image_size,
            "layers": layers,
            "width": vision_width,
            "head_width": 16,
            "patch_size": PATCH_SIZE,
        },
        "text_cfg": {
            "context_length": context_length,
            "vocab_size": 49408,
            "width": text_width,
            "heads": 4,
            "layers": layers,
        },
    }


def pretrain(
    pool_manifest: str,
    out: str,
    image_size: int = 16,
    vision_width: int = 128,
    text_width: int = 64,
    layers: int = 2,
    embed_dim: int = 64,
    context_length: int = 16,
    steps: int = 800,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    threads: int | None = None,
) -> None:
    use_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    started = time.time()
    pixels, captions = load_captioned_images(pool_manifest, image_size)
    pixels = (pixels - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]
    config = model_config(image_size, vision_width, text_width, layers, embed_dim, context_length)
    model = open_clip.CLIP(**config)
    tokenizer = open_clip.SimpleTokenizer(context_length=context_length)
    tokens = tokenizer(captions)
    # The 49k-row token table would dominate each optimiser step; its random rows
    # already tell tokens apart, so only the layers above it learn.
    model.token_embedding.requires_grad_(False)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.1)
    schedule = warmup_cosine(optimizer, steps)
    model.train()
    for _ in tqdm(range(steps), desc="clip steps", mininterval=5):
        index = torch.from_numpy(rng.choice(len(captions), size=min(batch_size, len(captions)), replace=False))
        image_features = model.encode_image(pixels[index], normalize=True)
        text_features = model.encode_text(tokens[index], normalize=True)
        logits = model.logit_scale.exp() * image_features @ text_features.T
        targets = torch.arange(len(index))
        loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, np.log(100))
    log.info("clip: final loss %.4f", loss.item())

    staging = Path(f"{out}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    preprocess = {"mean": list(CLIP_MEAN), "std": list(CLIP_STD), "interpolation": "bicubic", "resize_mode": "shortest"}
    (staging / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": config, "preprocess_cfg": preprocess}, indent=2)
    )
    # float16 on disk keeps the shipped mini-world checkpoints small; loading casts back.
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(staging / "open_clip_model.safetensors"))
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    log.info("clip trained on %d pool pairs in %.0f s, saved to %s", len(captions), time.time() - started, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", required=True, help="pool manifest with a caption column")
    parser.add_argument("--out", required=True, help="open_clip model folder to write")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--vision-width", type=int, default=128)
    parser.add_argument("--text-width", type=int, default=64, help="also the diffusion model's conditioning width")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--context-length", type=int, default=16)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    start_logging()
    pretrain(
        args.pool,
        args.out,
        image_size=args.image_size,
        vision_width=args.vision_width,
        text_width=args.text_width,
        layers=args.layers,
        embed_dim=args.embed_dim,
        context_length=args.context_length,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
    )


if __name__ == "__main__":
    run(main)
