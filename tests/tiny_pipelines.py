"""Tiny random pipelines of SDXL, SD3 and FLUX, built offline from component configs (the sizes
diffusers' own pipeline tests use) and saved with ``save_pretrained``, so that tests load them
with ``from_pretrained`` as a hub model is loaded.

Tokenizers are made here too: CLIP's from open_clip's BPE file (as the mini-world's), T5's
from a unigram vocabulary of the words the tests' prompts use, plus single characters so that
any word can be spelled.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

# Prompt length of the tiny CLIP encoders and T5 (the real ones take 77 and 256 or 512).
CONTEXT = 16
WIDTH = 32


def t5_tokenizer(out_dir: Path, words: list[str], model_max_length: int = CONTEXT):
    """A T5 tokenizer (unigram, Metaspace, ``</s>`` appended) over ``words`` and single characters."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(f"▁{word}", -3.0) for word in dict.fromkeys(words)]
    pieces += [(char, -6.0) for char in string.ascii_lowercase + string.digits + "-_<>.,"]
    backend = Tokenizer(Unigram(pieces, unk_id=2, byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"], special_tokens=[("</s>", 1)]
    )
    tokenizer = T5TokenizerFast(
        tokenizer_object=backend,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=0,
        model_max_length=model_max_length,
    )
    tokenizer.save_pretrained(out_dir)
    return T5TokenizerFast.from_pretrained(out_dir)


def clip_tokenizer(out_dir: Path):
    from augbench.miniworld.tokenizer import write_clip_tokenizer

    return write_clip_tokenizer(out_dir, model_max_length=CONTEXT)


def clip_encoder(with_projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=WIDTH,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=CONTEXT,
        projection_dim=WIDTH,
        hidden_act="gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)


def t5_encoder(vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab_size,
        d_model=WIDTH,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    return T5EncoderModel(config)


def vae(flow: bool):
    """Two blocks (latents at half the image side); flow models' VAEs shift and scale latents."""
    from diffusers import AutoencoderKL

    options = dict(shift_factor=0.0609, scaling_factor=1.5035, use_quant_conv=False, use_post_quant_conv=False)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
        **(options if flow else {}),
    )


def build_sdxl(out: Path, words: list[str]) -> Path:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + WIDTH,  # six size and crop numbers, the pooled text
        cross_attention_dim=2 * WIDTH,  # the two CLIP encoders' hidden states side by side
        norm_num_groups=1,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )
    pipeline = StableDiffusionXLPipeline(
        vae=vae(flow=False),
        text_encoder=clip_encoder(),
        text_encoder_2=clip_encoder(with_projection=True),
        tokenizer=clip_tokenizer(out / "tokenizer"),
        tokenizer_2=clip_tokenizer(out / "tokenizer_2"),
        unet=unet,
        scheduler=scheduler,
    )
    return save(pipeline, out)


def build_sd3(out: Path, words: list[str]) -> Path:
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(0)
    tokenizer_3 = t5_tokenizer(out / "tokenizer_3", words)
    transformer = SD3Transformer2DModel(
        sample_size=16,
        patch_size=1,
        in_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=WIDTH,
        joint_attention_dim=WIDTH,
        pooled_projection_dim=2 * WIDTH,  # the two CLIP encoders' pooled embeddings side by side
        out_channels=4,
        pos_embed_max_size=32,
    )
    pipeline = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae(flow=True),
        text_encoder=clip_encoder(with_projection=True),
        tokenizer=clip_tokenizer(out / "tokenizer"),
        text_encoder_2=clip_encoder(with_projection=True),
        tokenizer_2=clip_tokenizer(out / "tokenizer_2"),
        text_encoder_3=t5_encoder(len(tokenizer_3)),
        tokenizer_3=tokenizer_3,
    )
    return save(pipeline, out)


def build_flux(out: Path, words: list[str], guidance_distilled: bool = True) -> Path:
    """A FLUX.1 pipeline, guidance-distilled as FLUX.1-dev (the guidance scale a model input) unless told."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(0)
    tokenizer_2 = t5_tokenizer(out / "tokenizer_2", words)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4 * 4,  # latents packed 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=WIDTH,
        pooled_projection_dim=WIDTH,
        guidance_embeds=guidance_distilled,
        axes_dims_rope=[4, 4, 8],
    )
    pipeline = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae(flow=True),
        text_encoder=clip_encoder(),
        tokenizer=clip_tokenizer(out / "tokenizer"),
        text_encoder_2=t5_encoder(len(tokenizer_2)),
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    return save(pipeline, out)


BUILDERS = {"sdxl": build_sdxl, "sd3": build_sd3, "flux": build_flux}


def save(pipeline, out: Path) -> Path:
    pipeline.save_pretrained(out, safe_serialization=True)
    return out
