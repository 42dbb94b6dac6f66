"""Pre-train the mini-world's diffusion model: a small Stable-Diffusion-architecture
pipeline (AutoencoderKL, UNet2DConditionModel, CLIPTextModel, CLIPTokenizer) trained
on a captioned pool, saved with ``save_pretrained`` so that generation loads it with
the same ``StableDiffusionPipeline.from_pretrained`` call as a hub model.

    python -m augbench.miniworld.pretrain_diffusion --pool pool.csv --clip models/clip \
        --out models/diffusion --image-size 16 --vae-steps 600 --unet-steps 3000

As Stable Diffusion v1 conditions on OpenAI CLIP's text encoder, this pipeline
conditions on the text tower of the mini-world's CLIP (``--clip``), frozen. First
the VAE learns to reconstruct the pool's images, then the UNet learns to denoise
VAE latents given the caption (captions are dropped at ``--caption-dropout`` so
that classifier-free guidance works, as in SD).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import load_file
from tqdm import tqdm
from transformers import CLIPTextConfig, CLIPTextModel

from augbench.backends import StableDiffusion
from augbench.cli import run, start_logging, use_threads
from augbench.diffusion import encode_latents
from augbench.images import load_captioned_images
from augbench.miniworld.tokenizer import write_clip_tokenizer
from augbench.optim import warmup_cosine
from augbench.pretraining_sizes import check_sizes, norm_groups

log = logging.getLogger(__name__)

# Block widths of the VAE and of the UNet, each a tuple.
DEFAULT_CHANNELS = (32, 64)
# SD v1's noise schedule, so the schedulers used at generation behave as with SD.
NOISE_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def build_components(
    image_size: int,
    cross_attention_dim: int,
    vae_channels: tuple[int, ...] = DEFAULT_CHANNELS,
    unet_channels: tuple[int, ...] = DEFAULT_CHANNELS,
) -> tuple[AutoencoderKL, UNet2DConditionModel]:
    """Small versions of SD's VAE and UNet; the same classes at other sizes."""
    check_sizes(image_size, vae_channels, unet_channels)
    groups = norm_groups(vae_channels, unet_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(vae_channels),
        block_out_channels=vae_channels,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=groups,
        sample_size=image_size,
    )
    latent_size = image_size // 2 ** (len(vae_channels) - 1)
    unet = UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=unet_channels,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D",) * (len(unet_channels) - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (len(unet_channels) - 1),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=groups,
    )
    return vae, unet


def text_encoder_from_clip(clip_folder: str) -> CLIPTextModel:
    """The text tower of an open_clip model as a transformers ``CLIPTextModel``.

    Stable Diffusion v1 conditions on OpenAI CLIP's text encoder; the mini-world's
    diffusion model likewise conditions on the mini-world CLIP's, converted weight
    for weight (open_clip fuses q, k and v into one projection).
    """
    config = json.loads((Path(clip_folder) / "open_clip_config.json").read_text())["model_cfg"]["text_cfg"]
    state = load_file(str(Path(clip_folder) / "open_clip_model.safetensors"))
    width, layers = config["width"], config["layers"]
    encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=config["vocab_size"],
            hidden_size=width,
            intermediate_size=int(width * config.get("mlp_ratio", 4.0)),
            num_hidden_layers=layers,
            num_attention_heads=config["heads"],
            max_position_embeddings=config["context_length"],
            hidden_act="gelu",
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )
    # transformers 4 nests the modules under text_model, transformers 5 does not.
    top = "text_model." if any(key.startswith("text_model.") for key in encoder.state_dict()) else ""
    converted = {
        f"{top}embeddings.token_embedding.weight": state["token_embedding.weight"],
        f"{top}embeddings.position_embedding.weight": state["positional_embedding"],
        f"{top}final_layer_norm.weight": state["ln_final.weight"],
        f"{top}final_layer_norm.bias": state["ln_final.bias"],
    }
    for i in range(layers):
        ours, theirs = f"{top}encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for name, chunk in zip(("q", "k", "v"), state[theirs + "attn.in_proj_weight"].chunk(3)):
            converted[f"{ours}self_attn.{name}_proj.weight"] = chunk
        for name, chunk in zip(("q", "k", "v"), state[theirs + "attn.in_proj_bias"].chunk(3)):
            converted[f"{ours}self_attn.{name}_proj.bias"] = chunk
        pairs = {
            "self_attn.out_proj": "attn.out_proj",
            "layer_norm1": "ln_1",
            "layer_norm2": "ln_2",
            "mlp.fc1": "mlp.c_fc",
            "mlp.fc2": "mlp.c_proj",
        }
        for hf_name, clip_name in pairs.items():
            for kind in ("weight", "bias"):
                converted[f"{ours}{hf_name}.{kind}"] = state[f"{theirs}{clip_name}.{kind}"]
    encoder.load_state_dict({k: v.float() for k, v in converted.items()}, strict=True)
    return encoder.eval().requires_grad_(False)


def train_vae(vae: AutoencoderKL, pixels: torch.Tensor, steps: int, batch_size: int, lr: float, kl_weight: float, rng):
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr)
    vae.train()
    for _ in tqdm(range(steps), desc="vae steps", mininterval=5):
        batch = pixels[torch.from_numpy(rng.integers(len(pixels), size=batch_size))]
        posterior = vae.encode(batch).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        loss = F.mse_loss(reconstruction, batch) + kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    log.info("vae: final loss %.4f", loss.item())
    vae.eval()


def train_unet(backend, latents_mean, latents_std, captions, steps, batch_size, lr, caption_dropout, rng):
    """Train the pipeline's denoiser by its family's loss (``backend``, an ``augbench.backends`` adapter)."""
    noise_scheduler = backend.training_scheduler()
    empty = len(captions)
    # As in SD, the text encoder is frozen: its conditioning for every caption is computed once.
    texts = captions + [""]
    with torch.no_grad():
        parts = [backend.encode(texts[i : i + 512]) for i in range(0, len(texts), 512)]
    conditionings = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
    unet = backend.denoiser
    parameters = list(unet.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=1e-2)
    schedule = warmup_cosine(optimizer, steps)
    unet.train()
    for _ in tqdm(range(steps), desc="unet steps", mininterval=5):
        index = torch.from_numpy(rng.integers(len(captions), size=batch_size))
        latents = latents_mean[index] + latents_std[index] * torch.randn_like(latents_mean[index])
        drop = torch.from_numpy(rng.random(batch_size) < caption_dropout)
        rows = torch.where(drop, empty, index)
        conditioning = {key: value[rows] for key, value in conditionings.items()}
        loss = backend.loss(noise_scheduler, latents, conditioning).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
    log.info("unet: final loss %.4f", loss.item())
    unet.eval()


def pretrain(
    pool_manifest: str,
    clip_folder: str,
    out: str,
    image_size: int = 16,
    vae_channels: tuple[int, ...] = DEFAULT_CHANNELS,
    unet_channels: tuple[int, ...] = DEFAULT_CHANNELS,
    vae_steps: int = 600,
    unet_steps: int = 3000,
    batch_size: int = 64,
    lr: float = 1e-3,
    kl_weight: float = 1e-6,
    caption_dropout: float = 0.1,
    seed: int = 0,
    threads: int | None = None,
) -> None:
    use_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    started = time.time()
    pixels, captions = load_captioned_images(pool_manifest, image_size)
    pixels = pixels * 2 - 1  # the VAE works in [-1, 1]
    text_encoder = text_encoder_from_clip(clip_folder)
    vae, unet = build_components(image_size, text_encoder.config.hidden_size, tuple(vae_channels), tuple(unet_channels))
    staging = Path(f"{out}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    tokenizer = write_clip_tokenizer(
        staging / "tokenizer", model_max_length=text_encoder.config.max_position_embeddings
    )

    train_vae(vae, pixels, vae_steps, batch_size, lr, kl_weight, rng)
    latents_mean, latents_std = encode_latents(vae, pixels)
    # As SD does: scale latents to unit variance; the pipeline divides by it again.
    scaling = float(1.0 / latents_mean.std())
    vae.register_to_config(scaling_factor=scaling)
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(**NOISE_SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    backend = StableDiffusion(pipeline)
    train_unet(
        backend,
        latents_mean * scaling,
        latents_std * scaling,
        captions,
        unet_steps,
        batch_size,
        lr,
        caption_dropout,
        rng,
    )
    save_small(pipeline, staging)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    log.info(
        "diffusion pipeline trained on %d pool images in %.0f s, saved to %s", len(captions), time.time() - started, out
    )


def save_small(pipeline: StableDiffusionPipeline, folder: Path) -> None:
    """Save in float16, which keeps the shipped mini-world checkpoints small (from_pretrained casts back)."""
    pipeline.to(dtype=torch.float16).save_pretrained(folder, safe_serialization=True)
    tokenizer = Path(folder) / "tokenizer"
    if (tokenizer / "vocab.json").exists() and (tokenizer / "merges.txt").exists():
        # tokenizer.json only repeats vocab.json and merges.txt, in 3.6 MB.
        (tokenizer / "tokenizer.json").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", required=True, help="pool manifest with a caption column")
    parser.add_argument("--clip", required=True, help="open_clip folder whose text tower becomes the text encoder")
    parser.add_argument("--out", required=True, help="pipeline folder to write")
    parser.add_argument("--image-size", type=int, default=16)
    # extend: the rules repeat a flag per list item (--vae-channels 32 --vae-channels 64).
    parser.add_argument("--vae-channels", type=int, nargs="+", action="extend", help=f"default: {DEFAULT_CHANNELS}")
    parser.add_argument("--unet-channels", type=int, nargs="+", action="extend", help=f"default: {DEFAULT_CHANNELS}")
    parser.add_argument("--vae-steps", type=int, default=600)
    parser.add_argument("--unet-steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of both stages")
    parser.add_argument("--kl-weight", type=float, default=1e-6)
    parser.add_argument("--caption-dropout", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    start_logging()
    pretrain(
        args.pool,
        args.clip,
        args.out,
        image_size=args.image_size,
        vae_channels=tuple(args.vae_channels or DEFAULT_CHANNELS),
        unet_channels=tuple(args.unet_channels or DEFAULT_CHANNELS),
        vae_steps=args.vae_steps,
        unet_steps=args.unet_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        kl_weight=args.kl_weight,
        caption_dropout=args.caption_dropout,
        seed=args.seed,
        threads=args.threads,
    )


if __name__ == "__main__":
    run(main)
