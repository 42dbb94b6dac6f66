"""Personalise the diffusion model to the target subset; generation then samples from it.

    python -m augbench.personalise --model CompVis/stable-diffusion-v1-4 --classes classes.txt \
        --subset subset.csv --target token --vectors 1 --shard 0 --shards 20 --out shard0.safetensors

Targets (what is learned, by Stable Diffusion's denoising loss on the real images):

- ``token`` (textual inversion): a new token per class, ``--vectors`` input embeddings
  of the text encoder, started from the class name's; prompt "a photo of a <class-3>".
- ``conditioning``: the text encoder's output sequence itself (what the UNet attends
  to), one per class, or with ``--clusters k`` one per k-means cluster of the class's
  CLIP image embeddings (``--embeddings``); started from the class prompt's.
- ``unet``: the UNet, fine-tuned with class prompts, fully or as LoRA (``--unet lora``,
  peft adapters on the attention projections, as diffusers' LoRA training does).
- ``token_unet``: tokens and UNet together (DreamBooth-like).

Per-class targets learn each class independently: a step takes ``--batch-size`` images of
every class of the shard and sums the per-class losses, so each class's parameters see
only their own images and a class's result does not depend on how classes are sharded.
UNet targets learn one model from the whole subset and have one shard.

At Stable Diffusion's 512 px a step's batch may not fit in GPU memory at once:
``--micro-batch`` runs it in parts of that many images whose gradients add up to the
whole batch's (noise and timesteps are drawn for the whole batch first), so the update
is the same up to float error. ``--precision bfloat16`` runs the passes under autocast
(weights and optimiser stay float32) and ``--gradient-checkpointing`` recomputes the
UNet's activations in the backward pass instead of storing them.

The artefact is one safetensors file: ``token.<label>`` [vectors, dim],
``conditioning.<label>`` [clusters, length, dim] with ``cluster_sizes.<label>``, and
``unet.<name>`` (the full UNet's weights, or the LoRA weights in the layout
``pipeline.load_lora_weights`` reads); what it holds is in its metadata.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torchvision import transforms
from tqdm import tqdm

from augbench.cli import parse_bool, start_logging, use_threads
from augbench.diffusion import denoising_loss, draw_noise, encode_latents, encode_prompts
from augbench.files import atomic_path, read_classes, read_manifest
from augbench.images import load_rgb, pick_device
from augbench.models import load_pipeline
from augbench.optim import warmup_cosine
from augbench.shards import shard_block

log = logging.getLogger(__name__)

TARGETS = ("token", "conditioning", "unet", "token_unet")
PER_CLASS_TARGETS = ("token", "conditioning")
UNET_MODES = ("full", "lora")
PRECISIONS = ("float32", "bfloat16")
# The attention projections diffusers' LoRA training adapts.
LORA_MODULES = ["to_k", "to_q", "to_v", "to_out.0"]


def token_name(label: int) -> str:
    """The learned token of a class; diffusers adds ``_1``, ``_2``... for more vectors."""
    return f"<class-{label}>"


@dataclass
class Personalisation:
    """What personalisation artefacts hold, merged over shards."""

    target: str
    unet_mode: str | None = None
    vectors: int | None = None
    tokens: dict[int, torch.Tensor] = field(default_factory=dict)
    conditionings: dict[int, torch.Tensor] = field(default_factory=dict)
    cluster_sizes: dict[int, torch.Tensor] = field(default_factory=dict)
    unet: dict[str, torch.Tensor] = field(default_factory=dict)

    def check(self, target: str, labels: list[int], vectors: int | None, sources: list[str]) -> None:
        """Fail loudly where diffusers would go on silently with a missing or wrong embedding."""
        where = ", ".join(sources)
        if self.target != target:
            raise ValueError(f"personalisation {where} holds target {self.target!r}, the method asks for {target!r}")
        learned = self.tokens if target in ("token", "token_unet") else self.conditionings
        if target != "unet":
            missing = sorted(set(labels) - set(learned))
            if missing:
                raise ValueError(f"personalisation {where} lacks classes {missing[:10]} ({len(missing)} in all)")
        if target in ("token", "token_unet") and vectors is not None and self.vectors != vectors:
            raise ValueError(
                f"personalisation {where} has {self.vectors} vector(s) per token, the method asks for {vectors}"
            )
        if target in ("unet", "token_unet") and not self.unet:
            raise ValueError(f"personalisation {where} holds no UNet weights")


def load_personalisation(paths: list[str]) -> Personalisation:
    """Merge the artefacts of every shard of a method."""
    if not paths:
        raise ValueError("no personalisation artefacts given")
    merged = None
    for path in paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"personalisation artefact {path} does not exist; run its personalise job first")
        with safe_open(path, framework="pt") as handle:
            meta = handle.metadata() or {}
            if "target" not in meta:
                raise ValueError(f"{path} is not a personalisation artefact (no 'target' in its metadata)")
            part = Personalisation(
                target=meta["target"],
                unet_mode=meta.get("unet_mode") or None,
                vectors=int(meta["vectors"]) if meta.get("vectors") else None,
            )
            for key in handle.keys():
                kind, _, name = key.partition(".")
                tensor = handle.get_tensor(key)
                if kind == "unet":
                    part.unet[name] = tensor
                else:
                    getattr(part, {"token": "tokens", "conditioning": "conditionings"}.get(kind, kind))[int(name)] = (
                        tensor
                    )
        if merged is None:
            merged = part
            continue
        if (part.target, part.unet_mode, part.vectors) != (merged.target, merged.unet_mode, merged.vectors):
            raise ValueError(f"personalisation artefacts {paths} were made with different settings")
        for name in ("tokens", "conditionings", "cluster_sizes", "unet"):
            getattr(merged, name).update(getattr(part, name))
    return merged


def apply_personalisation(pipeline, personalisation: Personalisation) -> None:
    """Load learned tokens and UNet weights into a pipeline; conditionings are passed per call."""
    if personalisation.unet_mode == "full":
        pipeline.unet.load_state_dict(personalisation.unet, strict=True)
    elif personalisation.unet_mode == "lora":
        pipeline.load_lora_weights({f"unet.{name}": value for name, value in personalisation.unet.items()})
    if personalisation.tokens:
        labels = sorted(personalisation.tokens)
        dtype = pipeline.text_encoder.dtype
        pipeline.load_textual_inversion(
            [personalisation.tokens[label].to(dtype) for label in labels],
            token=[token_name(label) for label in labels],
        )


def subset_pixels(paths: list[str], size: int) -> torch.Tensor:
    """Real images resized and centre-cropped to the pipeline's resolution, in [-1, 1]."""
    transform = transforms.Compose(
        [
            transforms.Resize(size),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize([0.5] * 3, [0.5] * 3),
        ]
    )
    return torch.stack([transform(load_rgb(path)) for path in paths])


def subset_latents(vae, paths: list[str], size: int, chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and stds of the real images, read a chunk at a time (a large subset
    at 512 px would not fit in memory as pixels)."""
    parts = [
        encode_latents(vae, subset_pixels(paths[i : i + chunk_size], size)) for i in range(0, len(paths), chunk_size)
    ]
    return torch.cat([means for means, _ in parts]), torch.cat([stds for _, stds in parts])


def micro_batches(size: int, micro_batch: int | None) -> list[slice]:
    """The parts of a step's batch of ``size`` images that pass through the model one at a time."""
    if micro_batch is not None and micro_batch < 1:
        raise ValueError(
            f"micro_batch must be a positive number of images (or None for the whole batch), not {micro_batch}"
        )
    step = size if micro_batch is None else micro_batch
    return [slice(start, min(start + step, size)) for start in range(0, size, step)]


def cluster_images(embeddings: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """k-means cluster ids of one class's images (k capped at the number of images)."""
    from sklearn.cluster import KMeans

    k = min(clusters, len(embeddings))
    if k == 1:
        return np.zeros(len(embeddings), dtype=int)
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(embeddings)


def personalise(
    model: str,
    classes_path: str,
    subset_manifest: str,
    out: str,
    target: str,
    shard: int = 0,
    shards: int = 1,
    vectors: int = 1,
    clusters: int = 1,
    embeddings: str | None = None,
    unet_mode: str = "lora",
    lora_rank: int = 4,
    steps: int = 500,
    lr: float = 5e-3,
    unet_lr: float = 1e-4,
    batch_size: int = 4,
    micro_batch: int | None = None,
    precision: str = "float32",
    gradient_checkpointing: bool = False,
    template: str = "a photo of a {}",
    revision: str | None = None,
    seed: int = 0,
    device: str = "auto",
) -> Personalisation:
    if target not in TARGETS:
        raise ValueError(f"personalisation target {target!r} is not one of {list(TARGETS)}")
    if unet_mode not in UNET_MODES:
        raise ValueError(f"UNet fine-tuning {unet_mode!r} is not one of {list(UNET_MODES)}")
    if target not in PER_CLASS_TARGETS and shards != 1:
        raise ValueError(f"target {target!r} learns one UNet for all classes; it has 1 shard, not {shards}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {list(PRECISIONS)}")
    micro_batches(batch_size, micro_batch)  # a bad value fails before the model loads
    if clusters > 1 and (target != "conditioning" or embeddings is None):
        raise ValueError("clusters > 1 needs target 'conditioning' and the subset's CLIP image --embeddings")
    started = time.time()
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, shard])
    dev = pick_device(device)
    classes = read_classes(classes_path)
    subset = read_manifest(subset_manifest)
    labels = [int(label) for label in shard_block(len(classes), shard, shards)]
    rows = subset[subset.label.isin(labels)].reset_index(drop=True)
    empty = [label for label in labels if not (rows.label == label).any()]
    if empty:
        raise ValueError(f"classes {[classes[label] for label in empty]} have no images in {subset_manifest}")

    # Training runs in float32 whatever the generation dtype.
    pipeline = load_pipeline(model, revision, "ddim", "float32", dev)
    noise_scheduler = _training_scheduler(pipeline)
    unet, text_encoder, tokenizer = pipeline.unet, pipeline.text_encoder, pipeline.tokenizer
    for module in (unet, text_encoder, pipeline.vae):
        module.requires_grad_(False)
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    size = unet.config.sample_size * pipeline.vae_scale_factor
    means, stds = subset_latents(pipeline.vae, rows.path.tolist(), size)
    scale = pipeline.vae.config.scaling_factor
    means, stds = means * scale, stds * scale

    result = Personalisation(target=target, unet_mode=unet_mode if "unet" in target else None)
    groups = []
    uses_tokens = target in ("token", "token_unet")
    if uses_tokens:
        result.vectors = vectors
        token_rows, token_mask = _add_tokens(pipeline, labels, classes, vectors)
        embedding = text_encoder.get_input_embeddings().weight
        embedding.requires_grad_(True)
        # Only the new rows learn: every other row's gradient is zeroed (no weight decay, so Adam leaves them).
        embedding.register_hook(lambda grad: grad * token_mask.to(grad.dtype)[:, None])
        groups.append({"params": [embedding], "lr": lr, "weight_decay": 0.0})
    if target == "conditioning":
        cluster_of = np.zeros(len(rows), dtype=int)
        if clusters > 1:
            features = np.load(embeddings)[subset.label.isin(labels).to_numpy()]
            for label in labels:
                members = np.flatnonzero(rows.label.to_numpy() == label)
                cluster_of[members] = cluster_images(features[members], clusters, seed)
        keys = sorted({(int(label), int(c)) for label, c in zip(rows.label, cluster_of)})
        index_of = {key: i for i, key in enumerate(keys)}
        with torch.no_grad():
            start = encode_prompts(text_encoder, tokenizer, [template.format(classes[label]) for label, _ in keys])
        learned = torch.nn.Parameter(start.clone())
        row_conditioning = torch.tensor([index_of[(int(label), int(c))] for label, c in zip(rows.label, cluster_of)])
        groups.append({"params": [learned], "lr": lr, "weight_decay": 0.0})
    if "unet" in target:
        unet_parameters = _trainable_unet(unet, unet_mode, lora_rank)
        groups.append({"params": unet_parameters, "lr": unet_lr, "weight_decay": 1e-2})
        unet.train()
    if uses_tokens:
        prompts = [template.format(token_name(int(label))) for label in rows.label]
        prompts = [pipeline.maybe_convert_prompt(prompt, tokenizer) for prompt in prompts]
    else:
        prompts = [template.format(classes[int(label)]) for label in rows.label]

    optimizer = torch.optim.AdamW(groups)
    schedule = warmup_cosine(optimizer, steps)
    members = [np.flatnonzero(rows.label.to_numpy() == label) for label in labels]
    for _ in tqdm(range(steps), desc=f"personalise {target}", mininterval=5):
        if target in PER_CLASS_TARGETS:
            # batch_size images of every class; the loss sums per-class means.
            picks = np.concatenate([rng.choice(m, size=batch_size) for m in members])
        else:
            picks = rng.integers(len(rows), size=batch_size)
        index = torch.from_numpy(picks)
        latents = (means[index] + stds[index] * torch.randn_like(means[index])).to(dev)
        noise, timesteps = draw_noise(noise_scheduler, latents)
        parts = micro_batches(len(picks), micro_batch)
        optimizer.zero_grad(set_to_none=True)
        loss = 0.0
        for part in parts:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
                if target == "conditioning":
                    conditioning = learned[row_conditioning[index[part]]].to(dev)
                elif uses_tokens:
                    conditioning = encode_prompts(text_encoder, tokenizer, [prompts[i] for i in picks[part]])
                else:
                    with torch.no_grad():
                        conditioning = encode_prompts(text_encoder, tokenizer, [prompts[i] for i in picks[part]])
                losses = denoising_loss(
                    unet, noise_scheduler, latents[part], conditioning, noise[part], timesteps[part]
                )
            if len(parts) > 1:
                # Either loss below is the sum of per-image losses over batch_size; so is the sum of these.
                part_loss = losses.sum() / batch_size
            elif target in PER_CLASS_TARGETS:
                part_loss = losses.view(len(labels), batch_size).mean(dim=1).sum()
            else:
                part_loss = losses.mean()
            part_loss.backward()
            loss += part_loss.item()
        if "unet" in target:
            torch.nn.utils.clip_grad_norm_(unet_parameters, 1.0)
        optimizer.step()
        schedule.step()
    log.info("personalised %s for %d classes in %d steps; last loss %.4f", target, len(labels), steps, loss)

    if uses_tokens:
        weights = text_encoder.get_input_embeddings().weight.detach().cpu()
        for label in labels:
            result.tokens[label] = weights[token_rows[label]].clone()
    if target == "conditioning":
        values = learned.detach().cpu()
        for label in labels:
            ids = [index_of[key] for key in keys if key[0] == label]
            result.conditionings[label] = values[ids].clone()
            sizes = [
                int(np.sum((rows.label.to_numpy() == label) & (cluster_of == key[1])))
                for key in keys
                if key[0] == label
            ]
            result.cluster_sizes[label] = torch.tensor(sizes)
    if "unet" in target:
        result.unet = _unet_weights(unet, unet_mode)
    save_personalisation(out, result, labels, template, model)
    log.info("saved %s in %.0f s", out, time.time() - started)
    return result


def _training_scheduler(pipeline):
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(pipeline.scheduler.config)


def _add_tokens(pipeline, labels: list[int], classes: list[str], vectors: int):
    """Add each class's token through diffusers' textual-inversion loader, started from the class name.

    Returns the embedding rows of each class and a mask of every learnable row.
    """
    text_encoder, tokenizer = pipeline.text_encoder, pipeline.tokenizer
    table = text_encoder.get_input_embeddings().weight.detach()
    starts = []
    for label in labels:
        name_ids = tokenizer(classes[label], add_special_tokens=False).input_ids or [tokenizer.eos_token_id]
        starts.append(table[name_ids].mean(dim=0).repeat(vectors, 1))
    pipeline.load_textual_inversion(starts, token=[token_name(label) for label in labels])
    rows = {}
    for label in labels:
        names = [token_name(label)] + [f"{token_name(label)}_{i}" for i in range(1, vectors)]
        rows[label] = tokenizer.convert_tokens_to_ids(names)
    mask = torch.zeros(text_encoder.get_input_embeddings().weight.shape[0], dtype=torch.bool)
    mask[[row for ids in rows.values() for row in ids]] = True
    return rows, mask.to(text_encoder.device)


def _trainable_unet(unet, unet_mode: str, lora_rank: int) -> list[torch.nn.Parameter]:
    if unet_mode == "full":
        unet.requires_grad_(True)
    else:
        from peft import LoraConfig

        unet.add_adapter(
            LoraConfig(r=lora_rank, lora_alpha=lora_rank, init_lora_weights="gaussian", target_modules=LORA_MODULES)
        )
    return [p for p in unet.parameters() if p.requires_grad]


def _unet_weights(unet, unet_mode: str) -> dict[str, torch.Tensor]:
    if unet_mode == "full":
        return {name: value.detach().cpu() for name, value in unet.state_dict().items()}
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    return {name: value.detach().cpu() for name, value in state.items()}


def save_personalisation(out: str, result: Personalisation, labels: list[int], template: str, model: str) -> None:
    tensors = {f"token.{label}": value for label, value in result.tokens.items()}
    tensors |= {f"conditioning.{label}": value for label, value in result.conditionings.items()}
    tensors |= {f"cluster_sizes.{label}": value for label, value in result.cluster_sizes.items()}
    tensors |= {f"unet.{name}": value for name, value in result.unet.items()}
    metadata = {
        "target": result.target,
        "unet_mode": result.unet_mode or "",
        "vectors": str(result.vectors or ""),
        "classes": json.dumps(labels),
        "template": template,
        "model": model,
    }
    with atomic_path(out) as tmp:
        save_file({key: value.contiguous() for key, value in tensors.items()}, str(tmp), metadata=metadata)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="hub id or local pipeline folder")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--classes", required=True)
    parser.add_argument("--subset", required=True, help="the real images to personalise to")
    parser.add_argument("--out", required=True, help="safetensors file to write")
    parser.add_argument("--target", required=True, choices=TARGETS)
    parser.add_argument("--shard", type=int, default=0)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--vectors", type=int, default=1, help="input embeddings per learned token")
    parser.add_argument("--clusters", type=int, default=1, help="conditionings per class (k-means on --embeddings)")
    parser.add_argument(
        "--embeddings", default=None, help="CLIP image embeddings of the subset (.npy, rows as --subset)"
    )
    parser.add_argument("--unet", default="lora", choices=UNET_MODES, dest="unet_mode")
    parser.add_argument("--lora-rank", type=int, default=4)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--lr", type=float, default=5e-3, help="learning rate of tokens and conditionings")
    parser.add_argument("--unet-lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--micro-batch", type=int, default=None, help="images per forward/backward pass (default: the whole step)"
    )
    parser.add_argument("--precision", default="float32", choices=PRECISIONS, help="autocast dtype of the passes")
    parser.add_argument("--gradient-checkpointing", type=parse_bool, default=False)
    parser.add_argument("--template", default="a photo of a {}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    start_logging()
    use_threads(args.threads)
    options = vars(args)
    options.pop("threads")
    options["classes_path"] = options.pop("classes")
    options["subset_manifest"] = options.pop("subset")
    personalise(**options)


if __name__ == "__main__":
    main()
