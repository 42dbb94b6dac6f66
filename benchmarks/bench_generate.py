"""The diffusion pipeline's images/s, called as the generate module calls it, over the bare
steps it runs (the UNet with classifier-free guidance and the scheduler step at each
step, then the VAE decode), same batch, steps and scheduler. On a CPU machine this runs
the mini-world's pipeline (the shipped one, at the demo's batch); benchmarks/gpu.sh
measures a Stable-Diffusion-sized one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from timing import best_seconds

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "resources" / "miniworld" / "models" / "diffusion"
BATCH, STEPS, GUIDANCE, REPEATS = 50, 25, 7.5, 3


@torch.inference_mode()
def bare_steps(pipeline, prompt_embeds, negative_embeds, size: int, generator) -> torch.Tensor:
    unet, scheduler, vae = pipeline.unet, pipeline.scheduler, pipeline.vae
    scheduler.set_timesteps(STEPS)
    shape = (
        len(prompt_embeds),
        unet.config.in_channels,
        size // pipeline.vae_scale_factor,
        size // pipeline.vae_scale_factor,
    )
    latents = torch.randn(shape, generator=generator, device=generator.device, dtype=unet.dtype)
    latents = latents * scheduler.init_noise_sigma
    embeds = torch.cat([negative_embeds, prompt_embeds])
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        unconditional, conditional = unet(model_input, t, encoder_hidden_states=embeds).sample.chunk(2)
        latents = scheduler.step(unconditional + GUIDANCE * (conditional - unconditional), t, latents).prev_sample
    return vae.decode(latents / vae.config.scaling_factor).sample


def measure(model: str = str(MODEL), batch: int = BATCH, device: str = "cpu", dtype: str = "float32") -> dict:
    from augbench.models import load_pipeline

    dev = torch.device(device)
    pipeline = load_pipeline(model, None, "dpm_solver", dtype, dev)
    size = pipeline.unet.config.sample_size * pipeline.vae_scale_factor
    prompts = [f"a photo of a {i % 10}" for i in range(batch)]
    prompt_embeds, negative_embeds = pipeline.encode_prompt(prompts, dev, 1, True, [""] * batch)

    def pipeline_call():
        generators = [torch.Generator(dev).manual_seed(i) for i in range(batch)]
        pipeline(
            prompts, num_inference_steps=STEPS, guidance_scale=GUIDANCE, generator=generators, height=size, width=size
        )

    def bare_call():
        bare_steps(pipeline, prompt_embeds, negative_embeds, size, torch.Generator(dev).manual_seed(0))

    best = best_seconds({"pipeline": pipeline_call, "bare": bare_call}, dev, REPEATS)
    pipeline_rate, bare_rate = batch / best["pipeline"], batch / best["bare"]
    print(f"   pipeline {pipeline_rate:.2f} images/s, bare steps {bare_rate:.2f} images/s at {size} px, batch {batch}")
    return {
        "gen_images_per_s": pipeline_rate,
        "gen_bare_images_per_s": bare_rate,
        "gen_overhead_ratio": pipeline_rate / bare_rate,
    }
