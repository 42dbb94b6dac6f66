"""Generate extra training images with a Stable Diffusion pipeline.

    python -m augbench.generate --model CompVis/stable-diffusion-v1-4 --classes classes.txt \
        --subset subset.csv --out-dir added/gen_classname --steps 25 --guidance-scale 7.5

One module serves every generation method of the registry; they differ in options:

- ``--prompt classname`` fills the template with the class name ("a photo of a {}"),
  ``clip_templates`` draws one of CLIP's 80 ImageNet templates per image, ``empty``
  gives no prompt at all (unconditional generation).
- ``--zero-shot-keep SHARE`` labels every image by CLIP zero-shot classification
  against the class prompts (``--class-embeddings``); ``augbench.collect`` then keeps,
  per class, the most confident SHARE of the images given that class. Enough images
  are generated that each class can still reach its quota.
- ``--min-clip-score T`` (or ``--min-clip-score-file``, per class; see ``augbench.quality``)
  scores every image with CLIP against its class prompt (``--class-embeddings``); an image
  below its class's threshold is made again with a new seed of its own, for up to
  ``--regenerate-rounds`` rounds, and the job stops naming the classes still short.
- ``--strength S`` turns generation into image-to-image: each image starts from a
  real training image of its class noised to strength S (image variations).
- ``--personalisation FILE`` (one per shard) loads what ``augbench.personalise``
  learned: class tokens replace the class name in the prompt, learned conditionings
  replace the prompt, fine-tuned UNet weights replace the UNet's.

``--shard k --shards n`` makes the k-th of n blocks of the images, so a method's
images are made by n jobs (``augbench.collect`` merges their manifests).

Each image has its own seed (derived from ``--seed``, class and index), so the
result does not depend on batch size and an interrupted run resumes: images that
already exist for the same settings are kept, not regenerated. The manifest beside
the images records per image its method, class, prompt, seed and sampling settings,
and, where they apply, strength, source image, cluster and zero-shot score.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from augbench.cli import start_logging, use_threads
from augbench.diffusion import encode_prompts
from augbench.files import read_classes, read_manifest, save_image, write_manifest
from augbench.images import load_rgb, pick_device
from augbench.models import load_pipeline
from augbench.personalise import TARGETS, apply_personalisation, load_personalisation, token_name
from augbench.prompts import STYLES, class_prompts, write_prompt
from augbench.quality import class_thresholds, clip_scores, read_class_features
from augbench.quotas import class_quotas
from augbench.shards import shard_block

log = logging.getLogger(__name__)


def image_seed(seed: int, label: int, index: int) -> int:
    """A per-image seed, stable across batchings and reruns."""
    return int(np.random.SeedSequence([seed, label, index]).generate_state(1)[0])


def plan_images(
    classes: list[str],
    quotas: list[int],
    template: str,
    seed: int,
    images_dir: Path,
    style: str = "classname",
    names: list[str] | None = None,
) -> pd.DataFrame:
    """One row per image to make: path, label, prompt and seed.

    ``names`` replaces the class names in prompts (learned tokens). With the empty
    prompt, images have no class yet (label -1) and ``sum(quotas)`` are planned.
    """
    names = names or classes
    class_prompts(names, template)  # checks the template once, before any image
    rows = []
    if style == "empty":
        unlabelled = len(classes)  # seeds of unlabelled images use a label no class has
        for index in range(sum(quotas)):
            rows.append(
                {
                    "path": str(images_dir / f"unlabelled_{index:06d}.png"),
                    "label": -1,
                    "prompt": "",
                    "seed": image_seed(seed, unlabelled, index),
                }
            )
    for label, quota in enumerate(quotas if style != "empty" else []):
        for index in range(quota):
            seed_of_image = image_seed(seed, label, index)
            rows.append(
                {
                    "path": str(images_dir / f"{label:05d}_{index:05d}.png"),
                    "label": label,
                    "prompt": write_prompt(names[label], style, template, seed_of_image),
                    "seed": seed_of_image,
                }
            )
    return pd.DataFrame(rows, columns=["path", "label", "prompt", "seed"])


def assign_clusters(plan: pd.DataFrame, cluster_sizes: dict[int, torch.Tensor]) -> np.ndarray:
    """Each image's cluster, drawn with its own seed in proportion to the clusters' sizes."""
    clusters = []
    for label, seed in zip(plan.label, plan.seed):
        sizes = cluster_sizes[int(label)].double().numpy()
        clusters.append(int(np.random.default_rng(seed).choice(len(sizes), p=sizes / sizes.sum())))
    return np.array(clusters, dtype=int)


def assign_sources(plan: pd.DataFrame, subset: pd.DataFrame) -> list[str]:
    """The real image each image-to-image sample starts from: the class's images in turn."""
    by_class = {label: group.path.tolist() for label, group in subset.sort_values("path").groupby("label")}
    position = plan.groupby("label").cumcount()
    return [by_class[label][index % len(by_class[label])] for label, index in zip(plan.label, position)]


def retry_seed(seed: int, attempt: int) -> int:
    """The seed of an image's ``attempt``-th regeneration, from its first seed."""
    return int(np.random.SeedSequence([seed, attempt]).generate_state(1)[0])


def retry_path(path: str, attempt: int) -> str:
    file = Path(path)
    return str(file.with_name(f"{file.stem}_retry{attempt}{file.suffix}"))


def regenerate_below_threshold(
    plan: pd.DataFrame,
    thresholds: np.ndarray,
    rounds: int,
    score: Callable[[pd.DataFrame], np.ndarray],
    sample: Callable[[pd.DataFrame], None],
    classes: list[str],
) -> pd.DataFrame:
    """Replace each planned image whose CLIP score (``score``) is below its class's threshold.

    A replacement keeps the image's prompt (and source or cluster) and takes a seed and a file
    of its own (``retry_seed``, ``retry_path``), so the result does not depend on sharding or
    batching, and a rerun finds the replacements already made. Adds ``attempt`` (the images it
    replaced), ``clip_score`` and ``min_clip_score``; stops naming the classes still short.
    """
    final = plan.assign(attempt=0, clip_score=np.nan).reset_index(drop=True)
    first = final.copy()
    pending = np.arange(len(final))
    for attempt in range(rounds + 1):
        if attempt:
            retry = first.iloc[pending].assign(attempt=attempt)
            retry["seed"] = [retry_seed(int(seed), attempt) for seed in retry.seed]
            retry["path"] = [retry_path(path, attempt) for path in retry.path]
            todo = retry[[not Path(path).exists() for path in retry.path]]
            log.info("round %d: %d image(s) below their threshold made again", attempt, len(pending))
            if len(todo):
                sample(todo)
            for column in ("seed", "path", "attempt"):
                final.loc[pending, column] = retry[column].to_numpy()
        scores = score(final.iloc[pending])
        final.loc[pending, "clip_score"] = scores
        pending = pending[scores < thresholds[final.label.to_numpy()[pending]]]
        if not len(pending):
            break
    final["min_clip_score"] = thresholds[final.label.to_numpy()]
    if len(pending):
        short = final.iloc[pending].label.value_counts().sort_index()
        named = ", ".join(f"{classes[label]!r} ({count})" for label, count in short.items())
        raise ValueError(
            f"after {rounds} regeneration round(s), class(es) {named} still have that many images below "
            "their min_clip_score: lower the threshold or raise regenerate_rounds "
            "(the images made so far are kept and reused)"
        )
    return final


def zero_shot_label(plan: pd.DataFrame, image_features: np.ndarray, class_features: np.ndarray) -> pd.DataFrame:
    """Label each image by its nearest class prompt (CLIP zero-shot), with that similarity as its score.

    Which images are kept is decided over all shards, by ``augbench.collect``.
    """
    scores = image_features @ class_features.T
    return plan.assign(label=scores.argmax(axis=1), zero_shot_score=scores.max(axis=1))


def settings_folder(out_dir: Path, settings: dict, files: list[str]) -> Path:
    """Images are reused on a rerun only if made with the same settings and inputs: each
    has its own folder, so a changed config or a retrained artefact never mixes in stale images."""
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode())
    for path in files:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return out_dir / f"images-{digest.hexdigest()[:10]}"


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
    strength: float | None = None,
    personalisation: list[str] | None = None,
    personalised: str | None = None,
    vectors: int | None = None,
    zero_shot_keep: float | None = None,
    class_embeddings: str | None = None,
    clip_model: str | None = None,
    clip_pretrained: str | None = None,
    method: str | None = None,
    shard: int = 0,
    shards: int = 1,
    manifest: str | None = None,
    min_clip_score: float | None = None,
    min_clip_score_file: str | None = None,
    regenerate_rounds: int = 4,
) -> pd.DataFrame:
    """Make this shard's images (all of them with one shard); return and write its manifest.

    Images go to ``out_dir``; the manifest to ``manifest`` (default ``out_dir/manifest.csv``).
    """
    out_dir = Path(out_dir)
    classes = read_classes(classes_path)
    subset = read_manifest(subset_manifest)
    quotas = class_quotas(subset, len(classes), per_class)
    if prompt == "empty" and zero_shot_keep is None:
        raise ValueError("an empty prompt gives images no class: set zero_shot_keep to label them with CLIP")
    if zero_shot_keep is not None and not (0 < zero_shot_keep <= 1 and class_embeddings and clip_model):
        raise ValueError("zero_shot_keep needs a share in (0, 1], --class-embeddings and --clip-model")
    thresholds = class_thresholds(classes_path, min_clip_score, min_clip_score_file)
    if thresholds is not None and zero_shot_keep is not None:
        raise ValueError("min_clip_score cannot go with zero_shot_keep (which keeps the share CLIP scores best)")
    if thresholds is not None and not (class_embeddings and clip_model):
        raise ValueError("min_clip_score needs --class-embeddings and --clip-model to score the images")
    if regenerate_rounds < 0:
        raise ValueError(f"regenerate_rounds must be at least 0, got {regenerate_rounds}")
    if strength is not None and not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    if bool(personalisation) != bool(personalised):
        raise ValueError("give --personalised TARGET together with its --personalisation files")
    learned = None
    if personalisation:
        learned = load_personalisation(personalisation)
        learned.check(personalised, [label for label, quota in enumerate(quotas) if quota], vectors, personalisation)
    if personalised == "conditioning" and prompt != "classname":
        raise ValueError(f"learned conditionings replace the prompt; prompt {prompt!r} cannot apply")

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
        strength=strength,
        personalised=personalised,
    )
    inputs = list(personalisation or []) + ([subset_manifest] if strength is not None else [])
    images_dir = settings_folder(out_dir, settings, inputs)
    planned = quotas if zero_shot_keep is None else [math.ceil(q / zero_shot_keep) for q in quotas]
    names = [token_name(label) for label in range(len(classes))] if learned and learned.tokens else None
    plan = plan_images(classes, planned, template, seed, images_dir, prompt, names)
    if personalised == "conditioning":
        plan["cluster"] = assign_clusters(plan, learned.cluster_sizes)
        plan["prompt"] = [f"<learned conditioning {label}.{c}>" for label, c in zip(plan.label, plan.cluster)]
    if strength is not None:
        if prompt == "empty":
            raise ValueError("image-to-image starts from a real image of a class; it needs a class prompt")
        plan["source"] = assign_sources(plan, subset)
    plan = plan.iloc[shard_block(len(plan), shard, shards)].reset_index(drop=True)

    def sample(todo: pd.DataFrame) -> None:
        _sample(
            todo,
            model,
            revision,
            scheduler,
            dtype,
            device,
            learned,
            steps,
            guidance_scale,
            image_size,
            strength,
            batch_size,
        )

    def embed(frame: pd.DataFrame) -> np.ndarray:
        from augbench.clip_embeddings import encode_image_files

        return encode_image_files(frame.path.tolist(), clip_model, clip_pretrained, num_workers=0, device=device)[0]

    todo = plan[[not Path(path).exists() for path in plan.path]]
    log.info("%d of %d images to generate (%d already done)", len(todo), len(plan), len(plan) - len(todo))
    if len(todo):
        sample(todo)

    if zero_shot_keep is not None:
        plan = zero_shot_label(plan, embed(plan), np.load(class_embeddings))
    if thresholds is not None:
        class_features = read_class_features(class_embeddings, classes)

        def score(frame: pd.DataFrame) -> np.ndarray:
            return clip_scores(embed(frame), class_features, frame.label)

        plan = regenerate_below_threshold(plan, thresholds, regenerate_rounds, score, sample, classes)
    plan.insert(2, "class", [classes[label] for label in plan.label])
    plan.insert(3, "method", method or out_dir.name)
    plan["scheduler"] = scheduler
    plan["steps"] = steps
    plan["guidance_scale"] = guidance_scale
    if strength is not None:
        plan["strength"] = strength
    write_manifest(manifest or out_dir / "manifest.csv", plan)
    return plan


def _sample(
    todo, model, revision, scheduler, dtype, device, learned, steps, guidance_scale, image_size, strength, batch_size
):
    dev = pick_device(device)
    pipeline = load_pipeline(model, revision, scheduler, dtype, dev)
    if learned is not None:
        apply_personalisation(pipeline, learned)
    size = image_size or pipeline.unet.config.sample_size * pipeline.vae_scale_factor
    if strength is not None:
        from diffusers import StableDiffusionImg2ImgPipeline

        pipeline = StableDiffusionImg2ImgPipeline(**pipeline.components, requires_safety_checker=False)
        pipeline.set_progress_bar_config(disable=True)
        size_options = {"strength": strength}
    else:
        size_options = {"height": size, "width": size}
    if learned is not None and learned.conditionings:
        with torch.no_grad():
            unconditional = encode_prompts(pipeline.text_encoder, pipeline.tokenizer, [""])
        dtype_of = pipeline.text_encoder.dtype
    for start in tqdm(range(0, len(todo), batch_size), desc="generate batches", mininterval=5):
        batch = todo.iloc[start : start + batch_size]
        generators = [torch.Generator(dev).manual_seed(int(s)) for s in batch.seed]
        if "cluster" in batch:
            embeds = torch.stack([learned.conditionings[int(lb)][int(c)] for lb, c in zip(batch.label, batch.cluster)])
            text = {
                "prompt_embeds": embeds.to(dev, dtype_of),
                "negative_prompt_embeds": unconditional.expand(len(batch), -1, -1).to(dtype_of),
            }
        else:
            text = {"prompt": batch.prompt.tolist()}
        if strength is not None:
            size_options["image"] = [load_rgb(path).resize((size, size)) for path in batch.source]
        images = pipeline(
            **text,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            generator=generators,
            **size_options,
        ).images
        for path, image in zip(batch.path, images):
            save_image(path, image)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="hub id or local pipeline folder")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--classes", required=True)
    parser.add_argument("--subset", required=True, help="the real subset, which sets the per-class quota")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--shard", type=int, default=0, help="which block of the images this job makes")
    parser.add_argument("--shards", type=int, default=1, help="blocks the images are split into (one job each)")
    parser.add_argument("--manifest", default=None, help="manifest to write (default: OUT_DIR/manifest.csv)")
    parser.add_argument("--method", default=None, help="method name recorded per image (default: the out-dir name)")
    parser.add_argument("--template", default="a photo of a {}")
    parser.add_argument("--prompt", default="classname", choices=STYLES, help="how each image's prompt is written")
    parser.add_argument("--per-class", type=int, default=None, help="images per class (default: as many as real)")
    parser.add_argument("--scheduler", default="dpm_solver")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance-scale", type=float, default=7.5)
    parser.add_argument("--strength", type=float, default=None, help="image-to-image from real images at this noise")
    parser.add_argument("--personalisation", action="append", default=None, help="artefact of augbench.personalise")
    parser.add_argument("--personalised", default=None, choices=TARGETS, help="what the artefacts must hold")
    parser.add_argument("--vectors", type=int, default=None, help="vectors per learned token the artefacts must have")
    parser.add_argument("--zero-shot-keep", type=float, default=None, help="label by CLIP; keep this share per class")
    parser.add_argument("--class-embeddings", default=None, help="CLIP embeddings of the class prompts (.npy)")
    parser.add_argument("--clip-model", default=None, help="CLIP that embeds generated images for zero-shot labels")
    parser.add_argument("--clip-pretrained", default=None)
    parser.add_argument("--min-clip-score", type=float, default=None, help="CLIP score every image must reach")
    parser.add_argument("--min-clip-score-file", default=None, help="TSV of per-class thresholds (class, score)")
    parser.add_argument(
        "--regenerate-rounds", type=int, default=4, help="rounds that remake images below their threshold"
    )
    parser.add_argument("--image-size", type=int, default=None, help="default: the pipeline's native size")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    start_logging()
    use_threads(args.threads)
    options = vars(args)
    options.pop("threads")
    classes, subset, out_dir = options.pop("classes"), options.pop("subset"), options.pop("out_dir")
    plan = generate(options.pop("model"), classes, subset, out_dir, **options)
    log.info("%d generated images listed in %s", len(plan), Path(out_dir) / "manifest.csv")


if __name__ == "__main__":
    main()
