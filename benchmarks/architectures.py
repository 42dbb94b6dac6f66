"""Real-size diffusion architectures checked on CPU: what tiny test models cannot catch (embedding
widths, attention heads, LoRA target names, memory).

For each family it builds the components at their real widths and depths with random weights
(the sample size reduced to 64 px so that a CPU can run them), saves the pipeline with
``save_pretrained`` (float16, as checkpoints ship), and runs through the module command lines
one text-to-image and one image-to-image generation (two steps; one at strength 0.5), and for
each personalisation target one training step and a generation with what it learned. It
prints each command's time and peak memory and writes them to ``--out``.

    python benchmarks/architectures.py --families sd15 sdxl sd3 --out architectures.json

Families: ``sd15`` (UNet 320-640-1280-1280, CLIP ViT-L/14 text, SD's VAE), ``sdxl`` (UNet
320-640-1280 with 1-2-10 transformer layers, CLIP ViT-L/14 and OpenCLIP bigG text),
``sd3`` (SD3-medium's MMDiT: 24 blocks of 24 heads of 64, two CLIP text encoders and a T5 at
T5-XXL's width with ``--t5-layers`` of its 24 layers: T5-XXL whole is 19 GB in float32), and,
only when named, ``flux`` (FLUX.1 [schnell]: 12 B parameters, about 48 GB in float32; the
builder is what ``benchmarks/gpu.py`` times on a GPU).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SIZE = 64
CLASSES = ["tench", "goldfish"]


def clip_config(hidden: int, layers: int, heads: int, intermediate: int, projection: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=77,
        projection_dim=projection,
        hidden_act="gelu" if hidden > 768 else "quick_gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )


def clip_l(with_projection: bool = False):
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    config = clip_config(768, 12, 12, 3072, 768)
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)


def clip_big_g():
    from transformers import CLIPTextModelWithProjection

    return CLIPTextModelWithProjection(clip_config(1280, 32, 20, 5120, 1280))


def clip_tokenizer(folder: Path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from augbench.miniworld.tokenizer import write_clip_tokenizer

    return write_clip_tokenizer(folder, model_max_length=77)


def sd_vae(block_out=(128, 256, 512, 512), size: int = SIZE, **options):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=block_out,
        layers_per_block=2,
        sample_size=size,
        **options,
    )


def flow_vae(size: int, shift_factor: float, scaling_factor: float):
    """The 16-channel VAE of SD3 and FLUX.1 (no quant convolutions), with the family's latent shift and scale."""
    return sd_vae(
        size=size,
        latent_channels=16,
        shift_factor=shift_factor,
        scaling_factor=scaling_factor,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def build_sd15(out: Path) -> None:
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=SIZE // 8,
        cross_attention_dim=768,
        attention_head_dim=8,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipeline = StableDiffusionPipeline(
        vae=sd_vae(latent_channels=4, scaling_factor=0.18215),
        text_encoder=clip_l(),
        tokenizer=clip_tokenizer(out / "tokenizer"),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    save(pipeline, out)


def build_sdxl(out: Path, size: int = SIZE) -> None:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=size // 8,
        block_out_channels=(320, 640, 1280),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10),
        attention_head_dim=(5, 10, 20),
        use_linear_projection=True,
        cross_attention_dim=2048,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )
    pipeline = StableDiffusionXLPipeline(
        vae=sd_vae(latent_channels=4, scaling_factor=0.13025, size=size),
        text_encoder=clip_l(),
        text_encoder_2=clip_big_g(),
        tokenizer=clip_tokenizer(out / "tokenizer"),
        tokenizer_2=clip_tokenizer(out / "tokenizer_2"),
        unet=unet,
        scheduler=scheduler,
    )
    save(pipeline, out)


def t5_xxl(layers: int, vocabulary: int):
    """A T5 encoder at T5-XXL's width with ``layers`` of its 24 layers."""
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=vocabulary,
            d_model=4096,
            d_kv=64,
            d_ff=10240,
            num_layers=layers,
            num_heads=64,
            feed_forward_proj="gated-gelu",
            pad_token_id=0,
            eos_token_id=1,
        )
    )


def t5_tokenizer(folder: Path, length: int):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny_pipelines import t5_tokenizer

    return t5_tokenizer(folder, ["a", "photo", "of", *CLASSES], model_max_length=length)


def build_sd3(out: Path, t5_layers: int, size: int = SIZE) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    tokenizer_3 = t5_tokenizer(out / "tokenizer_3", 256)
    t5 = t5_xxl(t5_layers, len(tokenizer_3))
    transformer = SD3Transformer2DModel(
        sample_size=size // 8,
        patch_size=2,
        in_channels=16,
        num_layers=24,
        attention_head_dim=64,
        num_attention_heads=24,
        joint_attention_dim=4096,
        caption_projection_dim=1536,
        pooled_projection_dim=2048,
        out_channels=16,
        pos_embed_max_size=192,
    )
    pipeline = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=flow_vae(size, shift_factor=0.0609, scaling_factor=1.5305),
        text_encoder=clip_l(with_projection=True),
        tokenizer=clip_tokenizer(out / "tokenizer"),
        text_encoder_2=clip_big_g(),
        tokenizer_2=clip_tokenizer(out / "tokenizer_2"),
        text_encoder_3=t5,
        tokenizer_3=tokenizer_3,
    )
    save(pipeline, out)


def build_flux(out: Path, t5_layers: int, size: int = SIZE) -> None:
    """FLUX.1 [schnell]'s architecture: 19 double-stream and 38 single-stream blocks of 24 heads of
    128 (12 B parameters), CLIP ViT-L/14 and T5-XXL text, a 16-channel VAE; no guidance input."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    tokenizer_2 = t5_tokenizer(out / "tokenizer_2", 256)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=19,
        num_single_layers=38,
        attention_head_dim=128,
        num_attention_heads=24,
        joint_attention_dim=4096,
        pooled_projection_dim=768,
        guidance_embeds=False,
        axes_dims_rope=(16, 56, 56),
    )
    pipeline = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0),
        vae=flow_vae(size, shift_factor=0.1159, scaling_factor=0.3611),
        text_encoder=clip_l(),
        tokenizer=clip_tokenizer(out / "tokenizer"),
        text_encoder_2=t5_xxl(t5_layers, len(tokenizer_2)),
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    save(pipeline, out)  # at its native 1024 px whatever ``size``: FluxPipeline fixes it


def save(pipeline, out: Path) -> None:
    pipeline.to(dtype=torch.float16).save_pretrained(out, safe_serialization=True)


def world(folder: Path) -> tuple[str, str]:
    """Two classes of two random real images each: the classes file and the subset manifest."""
    rng = np.random.default_rng(0)
    rows = []
    for label in range(len(CLASSES)):
        for index in range(2):
            path = folder / f"{label}_{index}.png"
            Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(path)
            rows.append(f"{path},{label}")
    (folder / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (folder / "subset.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    return str(folder / "classes.txt"), str(folder / "subset.csv")


def timed(command: list[str]) -> dict:
    """Run a command; its wall time and peak resident memory."""
    started = time.time()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"failed: {' '.join(command)}\n{output[-4000:]}")
    return {"seconds": round(time.time() - started, 1), "peak_gb": round(usage.ru_maxrss / 2**20, 2)}


def check(family: str, model: str, scheduler: str, work: Path) -> dict:
    classes, subset = world(work)
    python = [sys.executable, "-m"]
    common = ["--classes", classes, "--subset", subset]
    sample = ["--model", model, "--scheduler", scheduler, "--steps", "2", "--image-size", str(SIZE)]
    sample += ["--device", "cpu", "--batch-size", "4"]
    results = {}

    def run(step: str, command: list[str]) -> None:
        results[step] = timed(python + command)
        print(f"{family:5} {step:28} {results[step]}", flush=True)  # as it comes: a family takes minutes

    run("generate text-to-image", ["augbench.generate", *common, *sample, "--out-dir", str(work / "t2i")])
    run(
        "generate image-to-image",
        ["augbench.generate", *common, *sample, "--strength", "0.5", "--out-dir", str(work / "i2i")],
    )
    for target in ("token", "conditioning", "unet", "token_unet"):
        artefact = str(work / f"{target}.safetensors")
        learn = ["--model", model, "--target", target, "--steps", "1", "--batch-size", "1", "--device", "cpu"]
        learn += ["--image-size", str(SIZE), "--out", artefact]
        run(f"personalise {target}", ["augbench.personalise", *common, *learn])
        uses = ["--personalisation", artefact, "--personalised", target]
        run(
            f"generate with {target}",
            ["augbench.generate", *common, *sample, *uses, "--out-dir", str(work / f"g_{target}")],
        )
    return results


BUILDERS = {
    "sd15": (build_sd15, "ddim"),
    "sdxl": (build_sdxl, "euler"),
    "sd3": (build_sd3, "flow_euler"),
    "flux": (build_flux, "flow_euler"),
}
# FLUX's 12 B parameters are about 48 GB in float32, beyond a 24 GB machine: named, not run, by default.
DEFAULT_FAMILIES = ["sd15", "sdxl", "sd3"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", choices=list(BUILDERS), default=DEFAULT_FAMILIES)
    parser.add_argument("--t5-layers", type=int, default=2, help="T5-XXL-wide layers of SD3's and FLUX's T5 (of 24)")
    parser.add_argument("--work", help="folder for the pipelines and images (default: a temporary one)")
    parser.add_argument("--out", help="JSON of each command's time and peak memory")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    report = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.work or scratch)
        for family in args.families:
            build, scheduler = BUILDERS[family]
            folder = root / family / "pipeline"
            if (folder / "model_index.json").exists():  # saved by an earlier run with the same --work
                report[family] = {"build and save": "reused"}
            else:
                started = time.time()
                # In a process of its own, so that this one does not hold the random weights' memory.
                options = [folder] + ([args.t5_layers] if family in ("sd3", "flux") else [])
                builder = multiprocessing.get_context("spawn").Process(target=build, args=(*options,))
                builder.start()
                builder.join()
                if builder.exitcode:
                    raise SystemExit(f"building {family} failed (exit code {builder.exitcode})")
                report[family] = {"build and save": {"seconds": round(time.time() - started, 1)}}
            print(f"{family:5} {'build and save':28} {report[family]['build and save']}", flush=True)
            work = root / family / "run"
            shutil.rmtree(work, ignore_errors=True)  # the jobs resume from what they find: time them afresh
            work.mkdir(parents=True)
            report[family] |= check(family, str(folder), scheduler, work)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
