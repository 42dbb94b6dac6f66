"""One adapter per diffusion model family, so generation, personalisation and pre-training
drive Stable Diffusion 1/2, SDXL, SD3/3.5 and FLUX.1 alike and never branch on the family.

An adapter wraps a loaded text-to-image pipeline (diffusers' own class for the family) and
says, for that family, how to:

- load it (:func:`load_backend`) and make its image-to-image pipeline (:meth:`Backend.image_to_image`);
- encode prompts into the conditioning the denoiser takes (:meth:`Backend.encode`): ``prompt_embeds``,
  plus ``pooled_prompt_embeds`` where the family has them, through the pipeline's own ``encode_prompt``;
- move images to latents (:meth:`Backend.latents`: SD3 and FLUX shift and scale, ``(z - shift) * scale``);
- compute the per-sample training loss (:meth:`Backend.loss`): noise or v prediction for UNets,
  flow matching for SD3 and FLUX (FLUX packs latents 2x2);
- name its denoiser, the LoRA target modules and the text encoders textual inversion extends,
  its native image size and the schedulers that can sample it.

The family is read from the pipeline folder's ``model_index.json`` (``_class_name``) unless
``diffusion.backend`` names it (``augbench.families``, which the config check reads without torch).
"""

from __future__ import annotations

import logging

import torch

from augbench.diffusion import draw_flow_noise, draw_noise, encode_latents, training_loss
from augbench.families import (
    BACKEND_NAMES,
    PIPELINES,
    SCHEDULERS,
    backend_name,
    schedulers_of,
)
from augbench.methods import check_backend

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class Backend:
    """A model family's adapter around a loaded text-to-image pipeline (``self.pipeline``)."""

    # The family (augbench.families): its text-to-image and image-to-image pipeline classes are PIPELINES[name].
    name: str
    # The pipeline component that denoises, and the prefix its LoRA weights take in load_lora_weights.
    denoiser_name = "unet"
    # The modules diffusers' LoRA training scripts adapt in this family's denoiser.
    lora_modules = ["to_k", "to_q", "to_v", "to_out.0"]
    # (text encoder, tokenizer) components that textual inversion extends with a class's token.
    token_encoders = (("text_encoder", "tokenizer"),)
    # Extra options of from_pretrained.
    load_options: dict = {}
    # Trained by flow matching (augbench.diffusion), else by the denoising objective.
    flow_matching = False

    def __init__(self, pipeline, text_length: int | None = None):
        self.pipeline = pipeline
        # T5 tokens a prompt is padded or cut to (SD3, FLUX); None: the pipeline's default.
        self.text_length = text_length

    # Loading

    @classmethod
    def load(cls, model: str, revision: str | None, scheduler: str, dtype: str, device: torch.device, **options):
        import diffusers

        check_backend(cls.name, scheduler)
        pipeline = getattr(diffusers, PIPELINES[cls.name][0]).from_pretrained(
            model, revision=revision or None, torch_dtype=DTYPES[dtype], **cls.load_options
        )
        scheduler_class = getattr(diffusers, SCHEDULERS[scheduler])
        extra = {"algorithm_type": "dpmsolver++"} if scheduler == "dpm_solver" else {}
        pipeline.scheduler = scheduler_class.from_config(pipeline.scheduler.config, **extra)
        pipeline.set_progress_bar_config(disable=True)
        return cls(pipeline.to(device), **options)

    def image_to_image(self):
        """The family's image-to-image pipeline on the same components (weights are shared)."""
        import diffusers

        pipeline = getattr(diffusers, PIPELINES[self.name][1]).from_pipe(self.pipeline)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    def image_to_image_options(self, size: int) -> dict:
        """Options of an image-to-image call for images of ``size`` pixels (the input images' size)."""
        return {}

    @property
    def denoiser(self) -> torch.nn.Module:
        return getattr(self.pipeline, self.denoiser_name)

    def modules(self) -> list[torch.nn.Module]:
        return [value for value in self.pipeline.components.values() if isinstance(value, torch.nn.Module)]

    def native_size(self) -> int:
        return self.denoiser.config.sample_size * self.pipeline.vae_scale_factor

    def token_pairs(self) -> list[tuple[torch.nn.Module, object]]:
        """The (text encoder, tokenizer) pairs a learned token is added to."""
        pipeline = self.pipeline
        return [
            (getattr(pipeline, encoder), getattr(pipeline, tokenizer)) for encoder, tokenizer in self.token_encoders
        ]

    def add_tokens(self, encoder, tokenizer, vectors: list[torch.Tensor], names: list[str]) -> None:
        """Add tokens (``names``, one ``[vectors, width]`` tensor each) to one text encoder and its tokenizer."""
        token_loader().load_textual_inversion(vectors, token=names, tokenizer=tokenizer, text_encoder=encoder)

    # Conditioning

    def encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """The denoiser's conditioning of each prompt, as the pipeline computes it (gradients flow)."""
        raise NotImplementedError

    def convert_prompts(self, prompts: list[str]) -> list[str]:
        """Prompts with each multi-vector learned token spelled out, where the pipeline does not do it itself."""
        return prompts

    def call_options(self, guidance_scale: float, true_cfg_scale: float | None = None, images: int = 1) -> dict:
        """The options of a pipeline call that makes ``images`` images, for guidance and text length.
        ``true_cfg_scale`` is for families whose ``guidance_scale`` is not classifier-free guidance
        (``methods.check_backend`` refuses it on the others)."""
        return {"guidance_scale": guidance_scale}

    # Training

    def latents(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and stds of the images' latents (images in [-1, 1]) in the space the denoiser works in."""
        vae = self.pipeline.vae
        means, stds = encode_latents(vae, pixels)
        shift, scale = vae.config.get("shift_factor") or 0.0, vae.config.scaling_factor
        return (means - shift) * scale, stds * scale

    def training_scheduler(self):
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_config(self.pipeline.scheduler.config)

    def draw_noise(self, noise_scheduler, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (draw_flow_noise if self.flow_matching else draw_noise)(noise_scheduler, latents)

    def loss(self, noise_scheduler, latents, conditioning: dict, noise=None, timesteps=None) -> torch.Tensor:
        """Per-sample training loss (shape ``[batch]``); noise and timesteps drawn here unless given."""
        if noise is None or timesteps is None:
            noise, timesteps = self.draw_noise(noise_scheduler, latents)
        return training_loss(self.predict, noise_scheduler, latents, conditioning, noise, timesteps, self.flow_matching)

    def predict(self, noisy, timesteps, conditioning: dict) -> torch.Tensor:
        """The denoiser's prediction: the noise (or velocity, for v-prediction) of a UNet, the flow's velocity."""
        return self.denoiser(noisy, timesteps, conditioning["prompt_embeds"]).sample


class StableDiffusion(Backend):
    """Stable Diffusion 1 and 2: a UNet conditioned on one CLIP text encoder's hidden states."""

    name = "sd"
    # Images are training data, scored and filtered downstream, never shown to users.
    load_options = {"safety_checker": None, "requires_safety_checker": False}

    def encode(self, prompts):
        pipeline = self.pipeline
        return {"prompt_embeds": pipeline.encode_prompt(prompts, pipeline.device, 1, False)[0]}


class StableDiffusionXL(Backend):
    """SDXL: a UNet conditioned on two CLIP encoders' hidden states and the second's pooled
    embedding with the image's size and crop ("text_time" added conditioning)."""

    name = "sdxl"
    token_encoders = (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2"))

    def encode(self, prompts):
        pipeline = self.pipeline
        embeds, _, pooled, _ = pipeline.encode_prompt(
            prompts, device=pipeline.device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def predict(self, noisy, timesteps, conditioning):
        # Trained images are the full, uncropped picture at the training size, as the pipeline asks by default.
        size = noisy.shape[-1] * self.pipeline.vae_scale_factor
        time_ids = torch.tensor([size, size, 0, 0, size, size], device=noisy.device, dtype=noisy.dtype)
        added = {"text_embeds": conditioning["pooled_prompt_embeds"], "time_ids": time_ids.repeat(len(noisy), 1)}
        return self.denoiser(noisy, timesteps, conditioning["prompt_embeds"], added_cond_kwargs=added).sample


class FlowBackend(Backend):
    """Families trained by flow matching with a transformer, as diffusers' DreamBooth LoRA scripts train them."""

    denoiser_name = "transformer"
    flow_matching = True

    def call_options(self, guidance_scale, true_cfg_scale=None, images=1):
        return {"guidance_scale": guidance_scale, **self.text_options()}

    def image_to_image_options(self, size):
        # SD3's and FLUX's image-to-image pipelines make their native size unless told, not the input's.
        return {"height": size, "width": size}

    def text_options(self) -> dict:
        """The T5 length of prompt encoding, where set."""
        return {} if self.text_length is None else {"max_sequence_length": self.text_length}

    def training_scheduler(self):
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler.from_config(self.pipeline.scheduler.config)


class StableDiffusion3(FlowBackend):
    """SD3 and 3.5: an MMDiT transformer conditioned on two CLIP encoders and T5, trained by flow matching."""

    name = "sd3"
    lora_modules = [
        "attn.to_k",
        "attn.to_q",
        "attn.to_v",
        "attn.to_out.0",
        "attn.add_k_proj",
        "attn.add_q_proj",
        "attn.add_v_proj",
        "attn.to_add_out",
    ]
    token_encoders = (
        ("text_encoder", "tokenizer"),
        ("text_encoder_2", "tokenizer_2"),
        ("text_encoder_3", "tokenizer_3"),
    )

    def convert_prompts(self, prompts):
        # SD3's pipeline has no textual-inversion loader, so it does not spell out multi-vector
        # tokens itself; the loader's own conversion does (the same token names in every tokenizer).
        return token_loader().maybe_convert_prompt(prompts, self.pipeline.tokenizer)

    def encode(self, prompts):
        pipeline = self.pipeline
        prompts = self.convert_prompts(prompts)
        embeds, _, pooled, _ = pipeline.encode_prompt(
            prompts,
            prompts,
            prompts,
            device=pipeline.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
            **self.text_options(),
        )
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def predict(self, noisy, timesteps, conditioning):
        return self.denoiser(
            hidden_states=noisy,
            timestep=timesteps,
            encoder_hidden_states=conditioning["prompt_embeds"],
            pooled_projections=conditioning["pooled_prompt_embeds"],
        ).sample


class Flux(FlowBackend):
    """FLUX.1: a transformer on 2x2-packed latents conditioned on T5 and CLIP's pooled embedding;
    the guidance-distilled models (dev) take the guidance scale as a model input."""

    name = "flux"
    # SD3's attention projections, and the feed-forward layers of the image and text streams.
    lora_modules = [
        *StableDiffusion3.lora_modules,
        "ff.net.0.proj",
        "ff.net.2",
        "ff_context.net.0.proj",
        "ff_context.net.2",
    ]
    token_encoders = (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2"))
    # The guidance a guidance-distilled FLUX (dev) is trained at: diffusers' FLUX DreamBooth default.
    training_guidance = 3.5

    def native_size(self):
        return self.pipeline.default_sample_size * self.pipeline.vae_scale_factor

    def call_options(self, guidance_scale, true_cfg_scale=None, images=1):
        options = super().call_options(guidance_scale)
        if true_cfg_scale is None:
            return options
        # Classifier-free guidance as the UNet families do it: against the empty prompt, one per image
        # (the pipeline encodes the negative prompts as a batch of their own).
        return {**options, "true_cfg_scale": true_cfg_scale, "negative_prompt": [""] * images}

    @property
    def guidance_distilled(self) -> bool:
        return bool(self.denoiser.config.guidance_embeds)

    def encode(self, prompts):
        pipeline = self.pipeline
        embeds, pooled, _ = pipeline.encode_prompt(prompts, device=pipeline.device, **self.text_options())
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def predict(self, noisy, timesteps, conditioning):
        from diffusers import FluxPipeline

        batch, channels, height, width = noisy.shape
        packed = FluxPipeline._pack_latents(noisy, batch, channels, height, width)
        image_ids = FluxPipeline._prepare_latent_image_ids(batch, height // 2, width // 2, noisy.device, noisy.dtype)
        embeds = conditioning["prompt_embeds"]
        text_ids = torch.zeros(embeds.shape[1], 3, device=noisy.device, dtype=noisy.dtype)
        guidance = None
        if self.guidance_distilled:
            guidance = torch.full((batch,), self.training_guidance, device=noisy.device)
        prediction = self.denoiser(
            hidden_states=packed,
            # The transformer multiplies timesteps by 1000 itself.
            timestep=timesteps / 1000,
            guidance=guidance,
            pooled_projections=conditioning["pooled_prompt_embeds"],
            encoder_hidden_states=embeds,
            txt_ids=text_ids,
            img_ids=image_ids,
        ).sample
        factor = self.pipeline.vae_scale_factor
        return FluxPipeline._unpack_latents(prediction, height * factor, width * factor, factor)


def token_loader():
    """diffusers' textual-inversion loader on its own, for any (tokenizer, text encoder) pair: SD3's
    pipeline lacks it, and the others' would only add to their first encoder unless told each pair."""
    from diffusers.loaders import TextualInversionLoaderMixin

    class TokenLoader(TextualInversionLoaderMixin):
        # What the loader looks at to move offloaded models; these encoders are never offloaded.
        hf_device_map = None
        components: dict = {}

    return TokenLoader()


BACKENDS = {backend.name: backend for backend in (StableDiffusion, StableDiffusionXL, StableDiffusion3, Flux)}
__all__ = ["BACKEND_NAMES", "BACKENDS", "DTYPES", "SCHEDULERS", "Backend", "backend_name", "load_backend"]


def load_backend(
    model: str,
    revision: str | None,
    scheduler: str | None,
    dtype: str,
    device: torch.device,
    backend: str = "auto",
    text_length: int | None = None,
) -> Backend:
    """Load a pipeline with its family's adapter and the named scheduler (None: the family's first)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}")
    if device.type == "cpu" and dtype != "float32":
        log.warning("dtype %s on CPU is slow or unsupported; using float32", dtype)
        dtype = "float32"
    family = BACKENDS[backend_name(model, revision, backend)]
    scheduler = scheduler or next(iter(schedulers_of(family.name)))
    return family.load(model, revision, scheduler, dtype, device, text_length=text_length)
