"""Pieces of diffusion training shared by pre-training and personalisation.

Both train with Stable Diffusion's objective: noise a VAE latent to a random
timestep and regress the UNet's prediction (noise, or velocity for v-prediction
models) given the text conditioning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def draw_noise(noise_scheduler, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The noise and timesteps of one training step's latents."""
    noise = torch.randn_like(latents)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(latents),), device=latents.device)
    return noise, timesteps


def denoising_loss(
    unet,
    noise_scheduler,
    latents: torch.Tensor,
    conditioning: torch.Tensor,
    noise: torch.Tensor | None = None,
    timesteps: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample diffusion loss (shape ``[batch]``), so callers can weight samples or groups.

    Noise and timesteps are drawn here unless given (a step split into micro-batches
    draws them for the whole batch, so the split does not change them).
    """
    if noise is None or timesteps is None:
        noise, timesteps = draw_noise(noise_scheduler, latents)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    prediction = unet(noisy, timesteps, conditioning).sample
    return F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))


@torch.no_grad()
def encode_latents(vae, pixels: torch.Tensor, chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and stds of images in [-1, 1], so training can sample latents cheaply."""
    means, stds = [], []
    for chunk in pixels.split(chunk_size):
        posterior = vae.encode(chunk.to(vae.device, vae.dtype)).latent_dist
        means.append(posterior.mean.float())
        stds.append(posterior.std.float())
    return torch.cat(means), torch.cat(stds)


def tokenize(tokenizer, prompts: list[str]) -> torch.Tensor:
    """Token ids padded to the text encoder's context, as Stable Diffusion's pipelines do."""
    return tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


def encode_prompts(text_encoder, tokenizer, prompts: list[str]) -> torch.Tensor:
    """The conditioning the UNet attends to: the text encoder's last hidden states."""
    ids = tokenize(tokenizer, prompts).to(text_encoder.device)
    return text_encoder(ids)[0]
