"""Generate extra training images with a Stable Diffusion pipeline.

``--prompt classname`` (gen_classname): every image of class c is generated from the
prompt template filled with c's name ("a photo of a {}"). ``--prompt clip_templates``
(gen_clip_templates): each image's prompt is one of CLIP's 80 ImageNet templates filled
with the class name, drawn with the image's own seed.

    python -m augbench.generate --model CompVis/stable-diffusion-v1-4 --classes classes.txt \
        --subset subset.csv --out-dir added/gen_classname --steps 25 --guidance-scale 7.5

Each image has its own seed (derived from ``--seed``, class and index), so the
result does not depend on batch size and an interrupted run resumes: images that
already exist for the same settings are kept, not regenerated. The manifest beside the images records
per image its class, prompt, seed, scheduler, steps and guidance scale.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from augbench.files import read_classes, read_manifest, save_image, write_manifest
from augbench.images import pick_device
from augbench.models import load_pipeline
from augbench.prompts import STYLES, class_prompts, write_prompt
from augbench.subset import class_quotas

log = logging.getLogger(__name__)


def image_seed(seed: int, label: int, index: int) -> int:
    """A per-image seed, stable across batchings and reruns."""
    return int(np.random.SeedSequence([seed, label, index]).generate_state(1)[0])


def plan_images(
    classes: list[str], quotas: list[int], template: str, seed: int, images_dir: Path, style: str = "classname"
) -> pd.DataFrame:
    class_prompts(classes, template)  # checks the template once, before any image
    rows = []
    for label, quota in enumerate(quotas):
        for index in range(quota):
            seed_of_image = image_seed(seed, label, index)
            rows.append(
                {
                    "path": str(images_dir / f"{label:05d}_{index:05d}.png"),
                    "label": label,
                    "prompt": write_prompt(classes[label], style, template, seed_of_image),
                    "seed": seed_of_image,
                }
            )
    return pd.DataFrame(rows, columns=["path", "label", "prompt", "seed"])


def generate(
    model: str,
    classes_path: str,
    subset_manifest: str,
    out_dir: str,
    template: str = "a photo of a {}",
    prompt: str = "classname",
    per_class: int | None = None,
    revision: str | None = None,
    scheduler: str = "dpm_solver",
    steps: int = 25,
    guidance_scale: float = 7.5,
    image_size: int | None = None,
    batch_size: int = 8,
    dtype: str = "float16",
    seed: int = 0,
    device: str = "auto",
) -> pd.DataFrame:
    out_dir = Path(out_dir)
    classes = read_classes(classes_path)
    quotas = class_quotas(read_manifest(subset_manifest), len(classes), per_class)
    settings = dict(
        model=model,
        revision=revision,
        scheduler=scheduler,
        steps=steps,
        guidance_scale=guidance_scale,
        image_size=image_size,
        dtype=dtype,
        template=template,
        prompt=prompt,
        seed=seed,
    )
    # Images are reused on a rerun only if made with the same settings: each set of
    # settings has its own folder, so a changed config never mixes in stale images.
    images_dir = out_dir / f"images-{hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]}"
    plan = plan_images(classes, quotas, template, seed, images_dir, prompt)
    todo = plan[[not Path(path).exists() for path in plan.path]]
    log.info("%d of %d images to generate (%d already done)", len(todo), len(plan), len(plan) - len(todo))
    if len(todo):
        dev = pick_device(device)
        pipeline = load_pipeline(model, revision, scheduler, dtype, dev)
        size = image_size or pipeline.unet.config.sample_size * pipeline.vae_scale_factor
        for start in tqdm(range(0, len(todo), batch_size), desc="generate batches", mininterval=5):
            batch = todo.iloc[start : start + batch_size]
            generators = [torch.Generator(dev).manual_seed(int(s)) for s in batch.seed]
            images = pipeline(
                prompt=batch.prompt.tolist(),
                height=size,
                width=size,
                num_inference_steps=steps,
                guidance_scale=guidance_scale,
                generator=generators,
            ).images
            for path, image in zip(batch.path, images):
                save_image(path, image)
    plan["scheduler"] = scheduler
    plan["steps"] = steps
    plan["guidance_scale"] = guidance_scale
    write_manifest(out_dir / "manifest.csv", plan)
    return plan


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="hub id or local pipeline folder")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--classes", required=True)
    parser.add_argument("--subset", required=True, help="the real subset, which sets the per-class quota")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--template", default="a photo of a {}")
    parser.add_argument(
        "--prompt",
        default="classname",
        choices=STYLES,
        help="how each image's prompt is written",
    )
    parser.add_argument("--per-class", type=int, default=None, help="images per class (default: as many as real)")
    parser.add_argument("--scheduler", default="dpm_solver")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance-scale", type=float, default=7.5)
    parser.add_argument("--image-size", type=int, default=None, help="default: the pipeline's native size")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    plan = generate(
        args.model,
        args.classes,
        args.subset,
        args.out_dir,
        template=args.template,
        prompt=args.prompt,
        per_class=args.per_class,
        revision=args.revision,
        scheduler=args.scheduler,
        steps=args.steps,
        guidance_scale=args.guidance_scale,
        image_size=args.image_size,
        batch_size=args.batch_size,
        dtype=args.dtype,
        seed=args.seed,
        device=args.device,
    )
    log.info("%d generated images listed in %s", len(plan), Path(args.out_dir) / "manifest.csv")


if __name__ == "__main__":
    main()
