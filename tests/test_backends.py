"""Every generation method runs on SDXL, SD3 and FLUX as on Stable Diffusion 1/2: the backend
adapters load each family, generate from text and from images, and personalisation learns each
target on it in a way that generation then uses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tiny_pipelines import WIDTH

from augbench import families, generate, personalisation, personalise
from augbench.files import read_classes, write_classes, write_manifest

from helpers import as_a_new_job

FAMILIES = ["sdxl", "sd3", "flux"]
SIZE = 32
# Text encoders textual inversion extends: SDXL's two CLIPs, SD3's two CLIPs and T5, FLUX's CLIP and T5.
ENCODERS = {"sdxl": 2, "sd3": 3, "flux": 2}
# The flow-matching families sample with a flow-matching scheduler; T5 prompts are kept short.
SAMPLING = {
    "sdxl": dict(scheduler="euler", image_size=SIZE),
    "sd3": dict(scheduler="flow_euler", image_size=SIZE, text_length=8),
    "flux": dict(scheduler="flow_euler", image_size=SIZE, text_length=8, guidance_scale=3.5),
}


@pytest.fixture(scope="module")
def subset(miniworld, tmp_path_factory):
    """Two real images each of the mini-world's first two classes, and a list of those classes."""
    folder = tmp_path_factory.mktemp("family_subset")
    train = pd.read_csv(miniworld / "train" / "manifest.csv")
    write_manifest(folder / "subset.csv", train[train.label < 2].groupby("label").head(2)[["path", "label"]])
    write_classes(folder / "classes.txt", read_classes(miniworld / "classes.txt")[:2])
    return str(folder / "subset.csv")


def _classes(subset: str) -> str:
    return str(Path(subset).parent / "classes.txt")


def _generate(family, model, subset, out_dir, **options) -> pd.DataFrame:
    sampling = {**SAMPLING[family], "steps": 2, "batch_size": 4}
    sampling.update(
        {key: options.pop(key) for key in ("strength", "steps", "true_cfg_scale", "image_size") if key in options}
    )
    settings = generate.Sampling(model, **sampling)
    return generate.generate(_classes(subset), subset, str(out_dir), settings, generate.Generation(**options))


def _images(plan: pd.DataFrame) -> list[np.ndarray]:
    return [np.asarray(Image.open(path), dtype=float) for path in plan.path]


def _difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(x - y).mean() for x, y in zip(a, b)]))


def _learn(family, model, subset, out, **options):
    settings = dict(steps=3, lr=0.5, unet_lr=0.1, batch_size=2)
    settings.update(options)
    job = {key: SAMPLING[family][key] for key in ("image_size", "text_length") if key in SAMPLING[family]}
    as_a_new_job()  # a precision or device of its own
    return personalise.personalise(
        model, _classes(subset), subset, str(out), personalisation.Training(**settings), **job
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_the_family_is_read_from_the_pipeline_folder_and_can_be_named(family, family_pipelines, tmp_path):
    folder = family_pipelines[family]
    assert families.backend_name(folder) == family
    assert families.backend_name(folder, backend="sd") == "sd"
    other = tmp_path / "other"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyPipeline"}))
    with pytest.raises(ValueError, match="KandinskyPipeline, which augbench has no backend for"):
        families.backend_name(str(other))
    with pytest.raises(ValueError, match="without model_index.json"):
        families.backend_name(str(tmp_path))


@pytest.mark.parametrize("family", FAMILIES)
def test_text_to_image_and_image_to_image_write_images(family, family_pipelines, subset, tmp_path):
    model = family_pipelines[family]
    from_text = _generate(family, model, subset, tmp_path / "text")
    from_images = _generate(family, model, subset, tmp_path / "images", strength=0.5)
    for plan in (from_text, from_images):
        assert plan.label.tolist() == [0, 0, 1, 1]
        for path in plan.path:
            with Image.open(path) as image:
                assert image.size == (SIZE, SIZE) and image.mode == "RGB"
    assert (from_images.source == sorted(from_images.source)).all() and "strength" in from_images
    # Image-to-image starts from the real image: another start gives another picture.
    assert _difference(_images(from_text), _images(from_images)) > 1.0
    # Below the native size too (SD3's and FLUX's image-to-image pipelines make their native size unless told).
    small = _generate(family, model, subset, tmp_path / "small", strength=0.5, image_size=SIZE // 2)
    assert all(Image.open(path).size == (SIZE // 2, SIZE // 2) for path in small.path)


@pytest.mark.parametrize("family", FAMILIES)
def test_template_prompts_and_the_empty_prompt_labelled_by_clip_generate(
    family, family_pipelines, subset, tiny_clip, tmp_path
):
    from augbench.clip_embeddings import embed_texts
    from augbench.prompts import class_prompts

    model = family_pipelines[family]
    templates = _generate(family, model, subset, tmp_path / "templates", prompt="clip_templates")
    assert templates.prompt.nunique() > 1 and all(Path(path).exists() for path in templates.path)
    prompts = str(tmp_path / "prompts.npy")
    embed_texts(class_prompts(read_classes(_classes(subset)), "a photo of a {}"), prompts, tiny_clip)
    zero_shot = dict(prompt="empty", zero_shot_keep=0.5, class_embeddings=prompts, clip_model=tiny_clip)
    unconditional = _generate(family, model, subset, tmp_path / "empty", **zero_shot)
    assert len(unconditional) == 8 and set(unconditional.label) <= {0, 1}  # twice the quota, to keep half
    assert (unconditional.prompt == "").all() and all(Path(path).exists() for path in unconditional.path)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_scheduler_of_the_other_objective_is_refused(family, family_pipelines, subset, tmp_path):
    wrong = "dpm_solver" if family != "sdxl" else "flow_euler"
    sampling = generate.Sampling(family_pipelines[family], **{**SAMPLING[family], "scheduler": wrong})
    with pytest.raises(ValueError, match=f"scheduler: '{wrong}' cannot sample backend '{family}'"):
        generate.generate(_classes(subset), subset, str(tmp_path), sampling)


def test_true_classifier_free_guidance_on_flux_guides_against_the_empty_prompt(family_pipelines):
    import torch

    from augbench.backends import load_backend

    backend = load_backend(family_pipelines["flux"], None, "flow_euler", "float32", torch.device("cpu"), text_length=8)

    def images(prompts: list[str], **guidance) -> np.ndarray:
        options = backend.call_options(3.5, images=len(prompts), **guidance)
        generators = [torch.Generator().manual_seed(seed) for seed in range(len(prompts))]
        made = backend.pipeline(
            prompt=prompts,
            num_inference_steps=2,
            generator=generators,
            height=SIZE,
            width=SIZE,
            output_type="np",
            **options,
        )
        return made.images

    named = ["a photo of a zero", "a photo of a one"]
    distilled = images(named)
    assert np.array_equal(images(named, true_cfg_scale=1.0), distilled)  # a scale of 1 guides nowhere
    assert np.abs(images(named, true_cfg_scale=4.0) - distilled).mean() > 1e-3
    # The negative branch is the empty prompt: guiding the empty prompt away from itself changes nothing.
    empty = ["", ""]
    assert np.allclose(images(empty, true_cfg_scale=4.0), images(empty), atol=1e-5)


def test_true_classifier_free_guidance_is_recorded_and_refused_where_guidance_scale_is_guidance(
    family_pipelines, subset, tmp_path
):
    guided = _generate("flux", family_pipelines["flux"], subset, tmp_path / "flux", true_cfg_scale=3.0)
    assert (guided.true_cfg_scale == 3.0).all() and all(Path(path).exists() for path in guided.path)
    unguided = _generate("flux", family_pipelines["flux"], subset, tmp_path / "flux")
    assert "true_cfg_scale" not in unguided and Path(unguided.path[0]).parent != Path(guided.path[0]).parent
    for family in ("sdxl", "sd3"):
        with pytest.raises(
            ValueError, match=f"true_cfg_scale: on backend '{family}' guidance_scale is classifier-free"
        ):
            _generate(family, family_pipelines[family], subset, tmp_path / family, true_cfg_scale=3.0)


@pytest.fixture(scope="module")
def classname_images(family_pipelines, subset, tmp_path_factory):
    """classname_images(family): the class-name images of a family's model, made once."""
    made = {}

    def images(family):
        if family not in made:
            out = tmp_path_factory.mktemp(f"{family}_classname")
            made[family] = _images(_generate(family, family_pipelines[family], subset, out))
        return made[family]

    return images


# Learning on SDXL and SD3 (about two minutes of make test on 2 cores) runs in make test-slow,
# beside their workflows (tests/test_families_workflow.py); FLUX's, the quickest, in make test.
LEARNING = [pytest.param(family, marks=pytest.mark.slow) if family != "flux" else family for family in FAMILIES]


@pytest.mark.parametrize(
    "target, options",
    [("token", {"vectors": 1}), ("conditioning", {}), ("unet", {"unet": "lora"}), ("token_unet", {"vectors": 2})],
)
@pytest.mark.parametrize("family", LEARNING)
def test_each_target_learns_on_each_family_and_changes_what_is_generated(
    family, target, options, family_pipelines, subset, classname_images, tmp_path
):
    model = family_pipelines[family]
    checks = {"personalised": target, "vectors": options.get("vectors")}
    # Every image has its own seed, so only what the artefact holds can make images differ.
    # Learned at a learning rate of zero, tokens and conditionings stay where they start (the
    # class name's embedding, the class prompt's conditioning) and LoRA adds nothing: the
    # class-name images come back, so the artefact goes through generation faithfully...
    if options.get("vectors", 1) == 1:  # two vectors are two tokens where the name was one
        untrained = tmp_path / "untrained.safetensors"
        _learn(family, model, subset, untrained, target=target, lr=1e-30, unet_lr=1e-30, steps=1, **options)
        same = _images(
            _generate(family, model, subset, tmp_path / "untrained", personalisation=[str(untrained)], **checks)
        )
        assert _difference(same, classname_images(family)) < 0.05
    else:
        same = classname_images(family)
    # ...and what training learned shows in the images.
    trained = tmp_path / "trained.safetensors"
    learned = _learn(family, model, subset, trained, target=target, **options)
    changed = _images(_generate(family, model, subset, tmp_path / "trained", personalisation=[str(trained)], **checks))
    # Tiny random models respond little to text; the smallest change measured was 0.6 (SD3's LoRA).
    assert _difference(changed, same) > 0.3
    if target in ("token", "token_unet"):
        # A class's vectors in every text encoder side by side (tiny_pipelines.WIDTH each).
        assert learned.tokens[0].shape == (options["vectors"], WIDTH * ENCODERS[family])


def test_flow_matching_regresses_the_velocity_between_latent_and_noise_at_the_drawn_sigma():
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    from augbench import diffusion

    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    latents = torch.randn(6, 4, 8, 8)
    noise, timesteps = diffusion.draw_flow_noise(scheduler, latents)
    sigmas = diffusion.flow_sigmas(scheduler, timesteps, latents.ndim)
    assert torch.allclose(sigmas.flatten(), timesteps / scheduler.config.num_train_timesteps)
    seen = {}

    def exact(noisy, steps, conditioning):
        seen["noisy"] = noisy
        return noise - latents

    losses = diffusion.training_loss(exact, scheduler, latents, None, noise, timesteps, flow_matching=True)
    assert losses.shape == (6,) and losses.abs().max() < 1e-10
    assert torch.allclose(seen["noisy"], (1 - sigmas) * latents + sigmas * noise)
    wrong = diffusion.training_loss(lambda *_: noise, scheduler, latents, None, noise, timesteps, flow_matching=True)
    assert torch.allclose(wrong, (latents**2).mean(dim=(1, 2, 3)))
