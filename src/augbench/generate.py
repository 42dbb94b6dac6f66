"""Generate extra training images with a diffusion pipeline (Stable Diffusion 1/2, SDXL, SD3, FLUX).

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from tqdm import tqdm

from augbench.backends import BACKEND_NAMES, DTYPES, SCHEDULERS, load_backend
from augbench.cli import add_settings, run, setting, settings_from, start_logging, use_threads
from augbench.families import backend_name
from augbench.files import read_classes, read_manifest, save_image, write_manifest
from augbench.images import load_rgb, pick_device
from augbench.methods import TARGETS, check_backend, check_generation
from augbench.personalisation import Personalisation, Target, load_personalisation, make_target
from augbench.prompts import STYLES, class_prompts, write_prompt
from augbench.quality import class_thresholds, clip_scores, read_class_features
from augbench.quotas import class_quotas
from augbench.shards import shard_block

log = logging.getLogger(__name__)


@dataclass
class Sampling:
    """The pipeline and how it samples each image (config ``diffusion`` and a method's sampler keys)."""

    model: str = setting(help="hub id or local pipeline folder")
    revision: str | None = setting(None, help="hub revision", config="diffusion.revision")
    backend: str = setting(
        "auto", help="model family (auto: from its model_index.json)", choices=BACKEND_NAMES, config="diffusion.backend"
    )
    scheduler: str = setting(
        "dpm_solver", help="sampling scheduler", choices=tuple(SCHEDULERS), config="methods.*.scheduler"
    )
    steps: int = setting(25, help="denoising steps", config="methods.*.steps")
    guidance_scale: float = setting(
        7.5,
        help="classifier-free guidance scale (FLUX: the distilled model's input)",
        config="methods.*.guidance_scale",
    )
    true_cfg_scale: float | None = setting(
        None,
        help="FLUX: classifier-free guidance against the empty prompt (None: none)",
        config="methods.*.true_cfg_scale",
    )
    strength: float | None = setting(
        None, help="image-to-image from real images at this noise", config="methods.*.strength"
    )
    image_size: int | None = setting(
        None, help="side of the images (None: the pipeline's native size)", config="diffusion.image_size"
    )
    text_length: int | None = setting(
        None, help="T5 tokens per prompt (SD3, FLUX; None: the pipeline's)", config="diffusion.text_length"
    )
    batch_size: int = setting(8, help="images per pipeline call", config="diffusion.batch_size")
    dtype: str = setting("float16", help="weights dtype on GPU", choices=tuple(DTYPES), config="diffusion.dtype")
    device: str = setting("auto", help="torch device", config="device")


@dataclass
class Generation:
    """What a generation method makes and keeps, and the files it uses (its entry in the method registry)."""

    prompt: str = setting(
        "classname", help="how each image's prompt is written", choices=STYLES, config="methods.*.prompt"
    )
    template: str = setting("a photo of a {}", help="the class prompt", config="prompt_template")
    per_class: int | None = setting(None, help="images per class (None: as many as real)", config="methods.*.per_class")
    seed: int = setting(0, help="seed every image's own seed derives from", config="methods.*.seed")
    zero_shot_keep: float | None = setting(
        None, help="label by CLIP; keep this share per class", config="methods.*.zero_shot_keep"
    )
    min_clip_score: float | None = setting(
        None, help="CLIP score every image must reach", config="methods.*.min_clip_score"
    )
    min_clip_score_file: str | None = setting(
        None, help="TSV of per-class thresholds (class, score)", config="methods.*.min_clip_score_file"
    )
    regenerate_rounds: int = setting(
        4, help="rounds that remake images below their threshold", config="methods.*.regenerate_rounds"
    )
    personalisation: list[str] | None = setting(None, help="artefact of augbench.personalise (one per shard)")
    personalised: str | None = setting(None, help="the target the artefacts must hold", choices=TARGETS)
    vectors: int | None = setting(None, help="vectors per learned token the artefacts must have")
    class_embeddings: str | None = setting(None, help="CLIP embeddings of the class prompts (.npy)")
    clip_model: str | None = setting(None, help="CLIP that embeds generated images (zero-shot labels, scores)")
    clip_pretrained: str | None = setting(None, help="its open_clip pretrained tag or weights file")


def later_settings(sampling: Sampling) -> dict:
    """Sampling settings that enter the images' folder only where set (see settings_folder)."""
    return {
        "backend": None if sampling.backend == "auto" else sampling.backend,
        "text_length": sampling.text_length,
        "true_cfg_scale": sampling.true_cfg_scale,
    }


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
        update_with_content(digest, path)
    return out_dir / f"images-{digest.hexdigest()[:10]}"


def update_with_content(digest, path: str) -> None:
    """Add what a file holds to ``digest``: a safetensors file by its tensors and metadata in sorted
    order (safetensors writes its metadata in an order of its own, so a personalisation learned
    again with identical results would otherwise look new), any other file by its bytes."""
    if not path.endswith(".safetensors"):
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return
    with safe_open(path, "pt") as artefact:
        digest.update(json.dumps(artefact.metadata() or {}, sort_keys=True).encode())
        for name in sorted(artefact.keys()):
            tensor = artefact.get_tensor(name).contiguous()
            digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())


def generate(
    classes_path: str,
    subset_manifest: str,
    out_dir: str,
    sampling: Sampling,
    generation: Generation | None = None,
    *,
    shard: int = 0,
    shards: int = 1,
    manifest: str | None = None,
    method: str | None = None,
) -> pd.DataFrame:
    """Make this shard's images (all of them with one shard); return and write its manifest.

    Images go to ``out_dir``; the manifest to ``manifest`` (default ``out_dir/manifest.csv``);
    ``method`` is recorded per image (default: the name of ``out_dir``).
    """
    settings = generation or Generation()
    filters = settings.min_clip_score is not None or settings.min_clip_score_file is not None
    check_generation(settings.prompt, sampling.strength, settings.zero_shot_keep, settings.personalised, filters)
    family = backend_name(sampling.model, sampling.revision, sampling.backend, required=False)
    check_backend(family, sampling.scheduler, sampling.guidance_scale, sampling.true_cfg_scale)
    out_dir = Path(out_dir)
    classes = read_classes(classes_path)
    subset = read_manifest(subset_manifest)
    quotas = class_quotas(subset, len(classes), settings.per_class)
    scorer = settings.class_embeddings and settings.clip_model
    keep = settings.zero_shot_keep
    if keep is not None and not (0 < keep <= 1 and scorer):
        raise ValueError("zero_shot_keep needs a share in (0, 1], --class-embeddings and --clip-model")
    if filters and not scorer:
        raise ValueError("min_clip_score needs --class-embeddings and --clip-model to score the images")
    thresholds = class_thresholds(classes_path, settings.min_clip_score, settings.min_clip_score_file)
    if settings.regenerate_rounds < 0:
        raise ValueError(f"regenerate_rounds must be at least 0, got {settings.regenerate_rounds}")
    if sampling.strength is not None and not 0 < sampling.strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {sampling.strength}")
    if sampling.strength is not None and int(sampling.steps * sampling.strength) < 1:
        # Image-to-image runs the last strength x steps steps of the schedule; none would leave the image as it was.
        raise ValueError(
            f"strength {sampling.strength} of {sampling.steps} steps denoises in no step; "
            "raise steps to at least 1 / strength"
        )
    if bool(settings.personalisation) != bool(settings.personalised):
        raise ValueError("give --personalised TARGET together with its --personalisation files")
    learned = target = None
    if settings.personalisation:
        learned = load_personalisation(settings.personalisation)
        classes_made = [label for label, quota in enumerate(quotas) if quota]
        learned.check(settings.personalised, classes_made, settings.vectors, settings.personalisation)
        target = make_target(learned.target)

    folder_settings = dict(
        model=sampling.model,
        revision=sampling.revision,
        scheduler=sampling.scheduler,
        steps=sampling.steps,
        guidance_scale=sampling.guidance_scale,
        image_size=sampling.image_size,
        dtype=sampling.dtype,
        template=settings.template,
        prompt=settings.prompt,
        seed=settings.seed,
        strength=sampling.strength,
        personalised=settings.personalised,
    )
    # Settings added later enter only where set, so the images of earlier runs are still found.
    folder_settings |= {key: value for key, value in later_settings(sampling).items() if value is not None}
    inputs = list(settings.personalisation or []) + ([subset_manifest] if sampling.strength is not None else [])
    images_dir = settings_folder(out_dir, folder_settings, inputs)
    planned = quotas if keep is None else [math.ceil(q / keep) for q in quotas]
    names = target.prompt_names(classes) if target else None
    plan = plan_images(classes, planned, settings.template, settings.seed, images_dir, settings.prompt, names)
    if target:
        plan = target.plan(plan, learned)
    if sampling.strength is not None:
        plan["source"] = assign_sources(plan, subset)
    plan = plan.iloc[shard_block(len(plan), shard, shards)].reset_index(drop=True)

    def sample(todo: pd.DataFrame) -> None:
        _sample(todo, sampling, learned, target)

    def embed(frame: pd.DataFrame) -> np.ndarray:
        from augbench.clip_embeddings import encode_image_files

        paths = frame.path.tolist()
        model, pretrained = settings.clip_model, settings.clip_pretrained
        return encode_image_files(paths, model, pretrained, num_workers=0, device=sampling.device)[0]

    todo = plan[[not Path(path).exists() for path in plan.path]]
    log.info("%d of %d images to generate (%d already done)", len(todo), len(plan), len(plan) - len(todo))
    if len(todo):
        sample(todo)

    if keep is not None:
        plan = zero_shot_label(plan, embed(plan), np.load(settings.class_embeddings))
    if thresholds is not None:
        class_features = read_class_features(settings.class_embeddings, classes)

        def score(frame: pd.DataFrame) -> np.ndarray:
            return clip_scores(embed(frame), class_features, frame.label)

        plan = regenerate_below_threshold(plan, thresholds, settings.regenerate_rounds, score, sample, classes)
    plan.insert(2, "class", [classes[label] for label in plan.label])
    plan.insert(3, "method", method or out_dir.name)
    plan["scheduler"] = sampling.scheduler
    plan["steps"] = sampling.steps
    plan["guidance_scale"] = sampling.guidance_scale
    if sampling.true_cfg_scale is not None:
        plan["true_cfg_scale"] = sampling.true_cfg_scale
    if sampling.strength is not None:
        plan["strength"] = sampling.strength
    write_manifest(manifest or out_dir / "manifest.csv", plan)
    return plan


def _sample(todo: pd.DataFrame, sampling: Sampling, learned: Personalisation | None, target: Target | None) -> None:
    dev = pick_device(sampling.device)
    backend = load_backend(
        sampling.model,
        sampling.revision,
        sampling.scheduler,
        sampling.dtype,
        dev,
        sampling.backend,
        sampling.text_length,
    )
    if target:
        target.apply(backend, learned)
    size = sampling.image_size or backend.native_size()
    pipeline = backend.pipeline
    if sampling.strength is not None:
        pipeline = backend.image_to_image()
        size_options = {"strength": sampling.strength, **backend.image_to_image_options(size)}
    else:
        size_options = {"height": size, "width": size}
    for start in tqdm(range(0, len(todo), sampling.batch_size), desc="generate batches", mininterval=5):
        batch = todo.iloc[start : start + sampling.batch_size]
        generators = [torch.Generator(dev).manual_seed(int(s)) for s in batch.seed]
        text = target.text_inputs(backend, learned, batch) if target else {"prompt": batch.prompt.tolist()}
        if sampling.strength is not None:
            size_options["image"] = [load_rgb(path).resize((size, size)) for path in batch.source]
        images = pipeline(
            **text,
            num_inference_steps=sampling.steps,
            generator=generators,
            **backend.call_options(sampling.guidance_scale, sampling.true_cfg_scale, len(batch)),
            **size_options,
        ).images
        for path, image in zip(batch.path, images):
            save_image(path, image)


def main(argv: list[str] | None = None) -> None:
    # Defaults live in Sampling, Generation and generate(); an option left out stays out of the namespace.
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=argparse.SUPPRESS
    )
    parser.add_argument("--classes", required=True)
    parser.add_argument("--subset", required=True, help="the real subset, which sets the per-class quota")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--shard", type=int, help="which block of the images this job makes")
    parser.add_argument("--shards", type=int, help="blocks the images are split into (one job each)")
    parser.add_argument("--manifest", help="manifest to write (default: OUT_DIR/manifest.csv)")
    parser.add_argument("--method", help="method name recorded per image (default: the out-dir name)")
    parser.add_argument("--threads", type=int)
    add_settings(parser, Sampling)
    add_settings(parser, Generation)
    args = parser.parse_args(argv)
    start_logging()
    use_threads(getattr(args, "threads", None))
    job = {key: getattr(args, key) for key in ("shard", "shards", "manifest", "method") if key in args}
    sampling, generation = settings_from(args, Sampling), settings_from(args, Generation)
    plan = generate(args.classes, args.subset, args.out_dir, sampling, generation, **job)
    log.info("%d generated images listed in %s", len(plan), job.get("manifest") or Path(args.out_dir) / "manifest.csv")


if __name__ == "__main__":
    run(main)
