"""Pieces of diffusion training shared by pre-training and personalisation, for every model family.

UNets (Stable Diffusion 1/2, SDXL) train with the denoising objective: noise a latent to a
random timestep and regress the prediction (noise, or velocity for v-prediction models).
Flow-matching transformers (SD3, FLUX) train as diffusers' DreamBooth scripts train them:
interpolate between latent and noise at a sigma drawn by diffusers' timestep sampling and
regress the velocity ``noise - latent``. ``augbench.backends`` says per family how the
denoiser is called; these functions take that call as ``predict``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# diffusers' scripts sample flow timesteps uniformly and weight the loss evenly by default.
FLOW_WEIGHTING = "none"


def draw_noise(noise_scheduler, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The noise and timesteps of one training step's latents."""
    noise = torch.randn_like(latents)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(latents),), device=latents.device)
    return noise, timesteps


def training_loss(
    predict: Callable,
    noise_scheduler,
    latents: torch.Tensor,
    conditioning,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    flow_matching: bool = False,
) -> torch.Tensor:
    """Per-sample training loss (shape ``[batch]``) of ``predict(noisy, timesteps, conditioning)``: the
    denoising objective, or with ``flow_matching`` the flow-matching one (see the module's doc)."""
    objective = flow_matching_objective if flow_matching else denoising_objective
    noisy, target, weighting = objective(noise_scheduler, latents, noise, timesteps)
    prediction = predict(noisy, timesteps, conditioning)
    squared = weighting * (prediction.float() - target.float()) ** 2
    return squared.mean(dim=tuple(range(1, squared.ndim)))


def denoising_objective(noise_scheduler, latents, noise, timesteps) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(noisy latents, target, loss weight): the noise, or the velocity for v-prediction models."""
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    if noise_scheduler.config.prediction_type == "v_prediction":
        return noisy, noise_scheduler.get_velocity(latents, noise, timesteps), 1.0
    return noisy, noise, 1.0


def denoising_loss(
    unet,
    noise_scheduler,
    latents: torch.Tensor,
    conditioning: torch.Tensor,
    noise: torch.Tensor | None = None,
    timesteps: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample diffusion loss of a UNet conditioned on text hidden states (Stable Diffusion 1/2).

    Noise and timesteps are drawn here unless given (a step split into micro-batches
    draws them for the whole batch, so the split does not change them).
    """
    if noise is None or timesteps is None:
        noise, timesteps = draw_noise(noise_scheduler, latents)

    def predict(noisy, steps, embeds):
        return unet(noisy, steps, embeds).sample

    return training_loss(predict, noise_scheduler, latents, conditioning, noise, timesteps)


def draw_flow_noise(noise_scheduler, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise and timesteps of a flow-matching step, drawn with diffusers' timestep sampling."""
    from diffusers.training_utils import compute_density_for_timestep_sampling

    noise = torch.randn_like(latents)
    density = compute_density_for_timestep_sampling(FLOW_WEIGHTING, len(latents), 0.0, 1.0, 1.29)
    indices = (density * noise_scheduler.config.num_train_timesteps).long()
    timesteps = noise_scheduler.timesteps[indices].to(latents.device)
    return noise, timesteps


def flow_sigmas(noise_scheduler, timesteps: torch.Tensor, dims: int) -> torch.Tensor:
    """Each timestep's sigma, shaped to broadcast over latents of ``dims`` dimensions."""
    schedule = noise_scheduler.timesteps.to(timesteps.device)
    indices = torch.stack([(schedule == t).nonzero()[0, 0] for t in timesteps])
    sigmas = noise_scheduler.sigmas.to(timesteps.device)[indices]
    return sigmas.reshape(-1, *[1] * (dims - 1))


def flow_matching_objective(
    noise_scheduler, latents, noise, timesteps
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(noisy latents, target, loss weight): the velocity ``noise - latent`` between them at each sigma."""
    from diffusers.training_utils import compute_loss_weighting_for_sd3

    sigmas = flow_sigmas(noise_scheduler, timesteps, latents.ndim).to(latents.dtype)
    noisy = (1.0 - sigmas) * latents + sigmas * noise
    return noisy, noise - latents, compute_loss_weighting_for_sd3(FLOW_WEIGHTING, sigmas).float()


@torch.no_grad()
def encode_latents(vae, pixels: torch.Tensor, chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and stds of images in [-1, 1], so training can sample latents cheaply."""
    means, stds = [], []
    for chunk in pixels.split(chunk_size):
        posterior = vae.encode(chunk.to(vae.device, vae.dtype)).latent_dist
        means.append(posterior.mean.float())
        stds.append(posterior.std.float())
    return torch.cat(means), torch.cat(stds)
