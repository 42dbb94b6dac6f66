"""GPU throughputs at the study's real sizes, with random weights (they run at the real speed):

- generation: a Stable-Diffusion-1.5-sized pipeline (UNet 320-640-1280-1280, 768-d text
  conditioning, SD's VAE) at 512 px, 25 DPM-Solver++ steps, classifier-free guidance,
  fp16, batch 8 and 16, through augbench's pipeline loading; and its overhead ratio over
  the bare UNet + VAE steps (benchmarks/bench_generate.py); and per later family, at its
  native 1024 px and the sampler the generator preset gives it, an SDXL-, SD3.5-Medium- and
  FLUX.1-schnell-sized pipeline (benchmarks/architectures.py's builders) through the same
  loading and pipeline call as augbench.generate, so the cost model has a rate per backend;
- training: ResNet-50 from scratch at 224 px, AMP and channels-last, from in-memory tensors;
- embedding: a ViT-L/14-sized open_clip image tower at 224 px, fp16;
- search: faiss on the GPU (when faiss has GPU support) for 1M x 768 vectors, k = 100, exact;
  and as a pool shard's search builds and searches it (augbench.search), k = 1,024;
- personalisation: SD-1.5-sized UNet training steps at 512 px as augbench.personalise runs
  them (float32), to conditioning vectors and to LoRA weights, batch 4.

benchmarks/cost_model.py turns the JSON into the GPU hours of a preset.

    python benchmarks/gpu.py --out gpu.json          # on a CUDA machine (benchmarks/gpu.sh)
    python benchmarks/gpu.py --smoke --out smoke.json  # tiny sizes on CPU: checks the code paths
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
REPO = HERE.parent

from timing import best_seconds  # noqa: E402


def _timed(call, device: torch.device, repeats: int) -> float:
    return best_seconds({"call": call}, device, repeats)["call"]


def text_width(smoke: bool) -> int:
    return 32 if smoke else 768


def sd_unet(smoke: bool):
    """A random-weight UNet of Stable Diffusion 1.5's architecture (64x64 latents, 512 px)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8 if smoke else 64,
        block_out_channels=(32, 64, 64, 64) if smoke else (320, 640, 1280, 1280),
        cross_attention_dim=text_width(smoke),
        attention_head_dim=8,
        layers_per_block=1 if smoke else 2,
        norm_num_groups=32,
    )


def sd_sized_pipeline(folder: Path, smoke: bool) -> str:
    """Save a random-weight pipeline of Stable Diffusion 1.5's architecture (tiny with ``smoke``)."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    width = text_width(smoke)
    unet = sd_unet(smoke)
    vae = AutoencoderKL(
        block_out_channels=(32, 32, 32, 32) if smoke else (128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1 if smoke else 2,
        sample_size=64 if smoke else 512,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=width,
            intermediate_size=4 * width,
            num_hidden_layers=2 if smoke else 12,
            num_attention_heads=4 if smoke else 12,
            max_position_embeddings=77,
            vocab_size=49408,
        )
    )
    # The mini-world's byte-level CLIP tokenizer: text encoding is not what is measured.
    tokenizer = CLIPTokenizer.from_pretrained(REPO / "resources" / "miniworld" / "models" / "diffusion" / "tokenizer")
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DPMSolverMultistepScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder)
    return str(folder)


def generation(device: torch.device, smoke: bool) -> dict:
    import bench_generate

    results = {}
    dtype = "float32" if smoke else "float16"
    with tempfile.TemporaryDirectory() as tmp:
        model = sd_sized_pipeline(Path(tmp) / "sd", smoke)
        for batch in (2,) if smoke else (8, 16):
            figures = bench_generate.measure(model, batch=batch, device=str(device), dtype=dtype)
            results[f"gen_sd15_512px_batch{batch}_images_per_s"] = figures["gen_images_per_s"]
            results[f"gen_sd15_overhead_ratio_batch{batch}"] = figures["gen_overhead_ratio"]
    return results


# Each later family as configs/imagenet10-generators.yaml samples it: scheduler, steps (fewer
# here: the cost model scales by steps), guidance, dtype and T5 length. FLUX.1 [schnell] takes no
# guidance: one transformer pass a step, where the others' classifier-free guidance makes two.
FAMILY_SAMPLING = {
    "sdxl": dict(scheduler="euler", steps=10, guidance_scale=5.0, dtype="float16", text_length=None, passes=2),
    "sd3": dict(scheduler="flow_euler", steps=10, guidance_scale=4.5, dtype="bfloat16", text_length=256, passes=2),
    "flux": dict(scheduler="flow_euler", steps=4, guidance_scale=0.0, dtype="bfloat16", text_length=256, passes=1),
}
FAMILY_BATCH = 4


def family_pipeline(family: str, folder: Path, smoke: bool) -> str:
    """Save a random-weight pipeline of the family at its real size and 1024 px (tiny with ``smoke``)."""
    if smoke:
        sys.path.insert(0, str(REPO / "tests"))
        import tiny_pipelines

        return str(tiny_pipelines.BUILDERS[family](folder, ["a", "photo", "of", "tench"]))
    import architectures

    build, _ = architectures.BUILDERS[family]
    options = {"t5_layers": 24} if family in ("sd3", "flux") else {}
    build(folder, size=1024, **options)
    return str(folder)


def _generate_batch(backend, prompts: list[str], sampling: dict, size: int, device: torch.device) -> None:
    generators = [torch.Generator(device).manual_seed(i) for i in range(len(prompts))]
    backend.pipeline(
        prompt=prompts,
        num_inference_steps=sampling["steps"],
        generator=generators,
        height=size,
        width=size,
        **backend.call_options(sampling["guidance_scale"], None, len(prompts)),
    )


def family_generation(device: torch.device, smoke: bool) -> dict:
    """Images/s of each later family's pipeline as augbench.generate loads and calls it."""
    from augbench.backends import load_backend

    results = {}
    for family, sampling in FAMILY_SAMPLING.items():
        with tempfile.TemporaryDirectory() as tmp:
            # Random weights are drawn on the GPU: 12 B parameters take minutes on CPUs.
            with torch.device(device):
                model = family_pipeline(family, Path(tmp) / family, smoke)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            dtype = "float32" if smoke else sampling["dtype"]
            backend = load_backend(model, None, sampling["scheduler"], dtype, device, family, sampling["text_length"])
            size = 32 if smoke else backend.native_size()
            prompts = [f"a photo of a tench {i}" for i in range(FAMILY_BATCH)]

            call = functools.partial(_generate_batch, backend, prompts, sampling, size, device)
            seconds = _timed(call, device, 2 if smoke else 3)
            del backend, call  # the partial holds the pipeline too
            if device.type == "cuda":
                torch.cuda.empty_cache()
        results[f"gen_{family}_{size}px_batch{FAMILY_BATCH}_images_per_s"] = FAMILY_BATCH / seconds
        results[f"gen_{family}_steps"] = sampling["steps"]
        results[f"gen_{family}_passes"] = sampling["passes"]
    return results


def personalisation(device: torch.device, smoke: bool) -> dict:
    """Images/s of a personalisation step as augbench.personalise runs it (float32, the
    denoising loss, backward through the UNet): to learned conditioning vectors (textual
    inversion, conditioning fine-tuning), and to LoRA weights (DM fine-tuning)."""
    from diffusers import DDPMScheduler

    from augbench.diffusion import denoising_loss
    from augbench.personalisation import trainable_unet_parameters

    batch = 2 if smoke else 4
    unet = sd_unet(smoke).to(device).requires_grad_(False)
    scheduler = DDPMScheduler()
    size = unet.config.sample_size
    latents = torch.randn(batch, 4, size, size, device=device)
    conditioning = torch.nn.Parameter(torch.randn(batch, 77, text_width(smoke), device=device))

    def step(parameters):
        loss = denoising_loss(unet, scheduler, latents, conditioning).mean()
        loss.backward()
        for parameter in parameters:
            parameter.grad = None

    results = {}
    repeats = 2 if smoke else 10
    seconds = _timed(lambda: step([conditioning]), device, repeats)
    results["personalise_sd15_512px_conditioning_images_per_s"] = batch / seconds
    lora = trainable_unet_parameters(unet, "lora", 8)
    unet.train()
    conditioning.requires_grad_(False)
    seconds = _timed(lambda: step(lora), device, repeats)
    results["personalise_sd15_512px_lora_images_per_s"] = batch / seconds
    return results


def training(device: torch.device, smoke: bool) -> dict:
    from augbench.classifier import build_model

    batch = 4 if smoke else 256
    size = 64 if smoke else 224
    model = build_model("resnet50", 1000).to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    images = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    seconds = _timed(step, device, 2 if smoke else 10)
    return {f"train_resnet50_{size}px_amp_images_per_s": batch / seconds}


def embedding(device: torch.device, smoke: bool) -> dict:
    import open_clip

    name = "ViT-B-32" if smoke else "ViT-L-14"
    batch = 4 if smoke else 256
    model = open_clip.create_model(name, pretrained=None, device=device).eval()
    if device.type == "cuda":
        model = model.half()
    images = torch.randn(batch, 3, 224, 224, device=device, dtype=next(model.parameters()).dtype)
    with torch.inference_mode():
        seconds = _timed(lambda: model.encode_image(images), device, 2 if smoke else 10)
    return {f"embed_{name.replace('-', '_')}_images_per_s": batch / seconds}


def search(device: torch.device, smoke: bool) -> dict:
    import bench_search
    import faiss
    import numpy as np

    n = 20_000 if smoke else bench_search.N
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((100 if smoke else 1000, 768), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    pool = bench_search.mixture(rng, centres, n)
    queries = bench_search.mixture(rng, centres, 1000)
    gpus = getattr(faiss, "get_num_gpus", lambda: 0)()
    index = faiss.IndexFlatIP(768)
    index.add(pool)
    if gpus:
        index = faiss.index_cpu_to_all_gpus(index)
    seconds = _timed(lambda: index.search(queries, 100), device, 3)
    results = {"search_faiss_gpus": gpus, "search_flat_1k_queries_seconds": seconds, "search_vectors": n}
    return results | shard_search(pool, queries, device)


def shard_search(pool, queries, device: torch.device) -> dict:
    """One pool shard as augbench.sharded_retrieval searches it: the index augbench.search chooses,
    trained and filled on the CPU, searched on the GPUs where faiss has them, to a text query's
    round-0 depth at 10% of ImageNet (4 x overfetch 2 x 128 images a class)."""
    from augbench.search import build_index, choose_factory, default_nprobe, gpu_count, search_index

    factory = choose_factory(len(pool), pool.shape[1], 8e9)
    start = time.perf_counter()
    index = build_index(pool, factory=factory)
    build = time.perf_counter() - start
    depth = min(1024, len(pool))
    seconds = _timed(lambda: search_index(index, queries, depth), device, 3)
    return {
        "search_shard_index": factory,
        "search_shard_nprobe": default_nprobe(factory),
        "search_shard_gpus": gpu_count(),
        "search_shard_build_seconds": build,
        "search_shard_depth": depth,
        "search_shard_1k_queries_seconds": seconds,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, on CPU if no GPU: checks the code paths")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        parser.error("no CUDA device: these figures need a GPU (use --smoke to check the code on CPU)")
    results = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "smoke": args.smoke}
    for name, part in (
        ("embedding", embedding),
        ("training", training),
        ("search", search),
        ("generation", generation),
        ("generation of later families", family_generation),
        ("personalisation", personalisation),
    ):
        start = time.perf_counter()
        results.update(part(device, args.smoke))
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
        Path(args.out).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")  # what is done so far
    print(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
