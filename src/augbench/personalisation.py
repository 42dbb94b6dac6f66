"""What personalisation learns and how generation uses it: the artefact, the settings, the targets.

``augbench.personalise`` trains a target; ``augbench.generate`` samples with what it learned.
Both go through this module, not through each other.

A target is one thing that can be learned, a small class with the same few methods:

- training: :meth:`Target.setup` makes its trainable parameters (with their learning rates),
  :meth:`Target.conditioning` gives the denoiser's conditioning for a batch of training images,
  :meth:`Target.export` puts what it learned into a :class:`Personalisation`;
- generation: :meth:`Target.check` refuses an artefact that does not fit, :meth:`Target.apply`
  loads it into a pipeline, :meth:`Target.prompt_names`, :meth:`Target.plan` and
  :meth:`Target.text_inputs` say what each image's prompt becomes.

Targets work through the model family's adapter (``augbench.backends``), so every target runs
on Stable Diffusion 1/2, SDXL, SD3 and FLUX alike.

``token`` (textual inversion) learns a token per class in every text encoder of the family;
``conditioning`` the text encoders' output per class or per cluster of a class; ``unet`` the
denoiser (a UNet, or SD3's and FLUX's transformer), full or LoRA (peft); ``token_unet`` is
the token and UNet targets together.

The artefact is one safetensors file per shard: ``token.<label>`` [vectors, dim] (the widths
of the family's text encoders side by side), ``conditioning.<label>`` [clusters, length, dim]
with ``cluster_sizes.<label>`` and, where the family has a pooled embedding,
``pooled.<label>`` [clusters, dim], and ``unet.<name>`` (the full denoiser's weights, or the
LoRA weights in the layout ``pipeline.load_lora_weights`` reads, less its component prefix);
what it holds is in its metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from augbench.backends import Backend
from augbench.cli import setting
from augbench.files import atomic_path
from augbench.methods import TARGETS

UNET_MODES = ("full", "lora")
PRECISIONS = ("float32", "bfloat16", "float16")
# The attention projections diffusers' LoRA training adapts.
LORA_MODULES = ["to_k", "to_q", "to_v", "to_out.0"]


def token_name(label: int) -> str:
    """The learned token of a class; diffusers adds ``_1``, ``_2``... for more vectors."""
    return f"<class-{label}>"


@dataclass
class Training:
    """What a personalisation learns and how: a method's ``personalise`` entry (less its shards)."""

    target: str = setting(help="what is learned", choices=TARGETS, config="methods.*.personalise.target")
    vectors: int = setting(1, help="input embeddings per learned token", config="methods.*.personalise.vectors")
    clusters: int = setting(
        1, help="conditionings per class (k-means on --embeddings)", config="methods.*.personalise.clusters"
    )
    unet: str = setting(
        "lora", help="how the UNet is fine-tuned", choices=UNET_MODES, config="methods.*.personalise.unet"
    )
    lora_rank: int = setting(4, help="rank of the LoRA adapters", config="methods.*.personalise.lora_rank")
    steps: int = setting(500, help="optimisation steps", config="methods.*.personalise.steps")
    lr: float = setting(5e-3, help="learning rate of tokens and conditionings", config="methods.*.personalise.lr")
    unet_lr: float = setting(
        1e-4, help="learning rate of the UNet or its adapters", config="methods.*.personalise.unet_lr"
    )
    batch_size: int = setting(
        4, help="images per class per step (per-class targets), or per step", config="methods.*.personalise.batch_size"
    )
    micro_batch: int | None = setting(
        None,
        help="images per forward/backward pass (None: the whole step)",
        config="methods.*.personalise.micro_batch",
    )
    precision: str = setting(
        "float32", help="autocast dtype of the passes", choices=PRECISIONS, config="methods.*.personalise.precision"
    )
    gradient_checkpointing: bool = setting(
        False,
        help="recompute the UNet's activations in the backward pass",
        config="methods.*.personalise.gradient_checkpointing",
    )
    template: str = setting("a photo of a {}", help="the class prompt", config="prompt_template")
    seed: int = setting(0, help="seed of sampling, noise and clustering", config="methods.*.personalise.seed")


@dataclass
class TrainingImages:
    """The real images one personalisation job learns from."""

    classes: list[str]  # every class's name, by label
    labels: list[int]  # the classes this job learns
    rows: pd.DataFrame  # path and label of their images
    features: np.ndarray | None = None  # their CLIP image embeddings (rows as ``rows``), for clusters

    def members(self) -> list[np.ndarray]:
        """The rows of each class, in ``labels`` order."""
        return [np.flatnonzero(self.rows.label.to_numpy() == label) for label in self.labels]


@dataclass
class Personalisation:
    """What personalisation artefacts hold, merged over shards."""

    target: str
    unet_mode: str | None = None
    vectors: int | None = None
    tokens: dict[int, torch.Tensor] = field(default_factory=dict)
    conditionings: dict[int, torch.Tensor] = field(default_factory=dict)
    cluster_sizes: dict[int, torch.Tensor] = field(default_factory=dict)
    # The pooled text embedding of each conditioning, where the family has one (SDXL, SD3, FLUX).
    pooled: dict[int, torch.Tensor] = field(default_factory=dict)
    unet: dict[str, torch.Tensor] = field(default_factory=dict)

    def check(self, target: str, labels: list[int], vectors: int | None, sources: list[str]) -> None:
        """Fail loudly where diffusers would go on silently with a missing or wrong embedding."""
        where = ", ".join(sources)
        if self.target != target:
            raise ValueError(f"personalisation {where} holds target {self.target!r}, the method asks for {target!r}")
        make_target(target).check(self, labels, vectors, where)


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
            tables = {
                "token": part.tokens,
                "conditioning": part.conditionings,
                "cluster_sizes": part.cluster_sizes,
                "pooled": part.pooled,
            }
            for key in handle.keys():
                kind, _, name = key.partition(".")
                if kind == "unet":
                    part.unet[name] = handle.get_tensor(key)
                else:
                    tables[kind][int(name)] = handle.get_tensor(key)
        if merged is None:
            merged = part
            continue
        if (part.target, part.unet_mode, part.vectors) != (merged.target, merged.unet_mode, merged.vectors):
            raise ValueError(f"personalisation artefacts {paths} were made with different settings")
        for name in ("tokens", "conditionings", "cluster_sizes", "pooled", "unet"):
            getattr(merged, name).update(getattr(part, name))
    return merged


def save_personalisation(out: str, result: Personalisation, labels: list[int], template: str, model: str) -> None:
    tensors = {f"token.{label}": value for label, value in result.tokens.items()}
    tensors |= {f"conditioning.{label}": value for label, value in result.conditionings.items()}
    tensors |= {f"cluster_sizes.{label}": value for label, value in result.cluster_sizes.items()}
    tensors |= {f"pooled.{label}": value for label, value in result.pooled.items()}
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


def apply_personalisation(backend: Backend, learned: Personalisation) -> None:
    """Load learned tokens and UNet weights into a pipeline; conditionings are passed per call."""
    make_target(learned.target).apply(backend, learned)


def assign_clusters(plan: pd.DataFrame, cluster_sizes: dict[int, torch.Tensor]) -> np.ndarray:
    """Each image's cluster, drawn with its own seed in proportion to the clusters' sizes."""
    clusters = []
    for label, seed in zip(plan.label, plan.seed):
        sizes = cluster_sizes[int(label)].double().numpy()
        clusters.append(int(np.random.default_rng(seed).choice(len(sizes), p=sizes / sizes.sum())))
    return np.array(clusters, dtype=int)


def cluster_images(embeddings: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """k-means cluster ids of one class's images (k capped at the number of images)."""
    from sklearn.cluster import KMeans

    k = min(clusters, len(embeddings))
    if k == 1:
        return np.zeros(len(embeddings), dtype=int)
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(embeddings)


def trainable_unet_parameters(
    unet, mode: str, lora_rank: int, target_modules: list[str] | None = None
) -> list[torch.nn.Parameter]:
    """Make the denoiser's weights (``full``) or new LoRA adapters on ``target_modules`` (default:
    a UNet's attention projections) trainable."""
    if mode == "full":
        unet.requires_grad_(True)
    else:
        from peft import LoraConfig

        modules = target_modules or LORA_MODULES
        unet.add_adapter(
            LoraConfig(r=lora_rank, lora_alpha=lora_rank, init_lora_weights="gaussian", target_modules=modules)
        )
    return [p for p in unet.parameters() if p.requires_grad]


class Target:
    """One thing personalisation can learn; the training loop and generation drive every target alike.

    ``backend`` is the model family's adapter (``augbench.backends``) around the loaded pipeline.
    """

    name: str
    # Learned per class (each step takes images of every class, a shard holds some classes)
    # or one model for all classes.
    per_class: bool

    # Training

    def setup(self, backend: Backend, images: TrainingImages, training: Training) -> list[dict]:
        """Make the parameters to learn; return them as the optimiser's parameter groups."""
        raise NotImplementedError

    def conditioning(self, picks: np.ndarray) -> dict[str, torch.Tensor]:
        """The conditioning of the denoiser (``prompt_embeds``, and ``pooled_prompt_embeds`` where
        the family has them) for the training images ``picks`` (rows)."""
        raise NotImplementedError

    def clip_gradients(self) -> None:
        """Bound the gradients before a step, where the target needs it."""

    def export(self, result: Personalisation) -> None:
        """Put what was learned into the artefact."""
        raise NotImplementedError

    # Generation

    def check(self, learned: Personalisation, labels: list[int], vectors: int | None, where: str) -> None:
        """Refuse an artefact that lacks what generation needs of this target."""

    def apply(self, backend: Backend, learned: Personalisation) -> None:
        """Load what was learned into the pipeline."""

    def prompt_names(self, classes: list[str]) -> list[str] | None:
        """What prompts call each class, where not its name."""
        return None

    def plan(self, plan: pd.DataFrame, learned: Personalisation) -> pd.DataFrame:
        """The planned images, with what this target adds to each."""
        return plan

    def text_inputs(self, backend: Backend, learned: Personalisation, batch: pd.DataFrame) -> dict:
        """The pipeline's text arguments for a batch of planned images."""
        return {"prompt": backend.convert_prompts(batch.prompt.tolist())}


class TokenTarget(Target):
    """Textual inversion: a new token per class, ``vectors`` input embeddings of each text encoder
    the family has (SDXL two, SD3 three, FLUX two), started from the class name's; prompts say
    "a photo of a <class-3>". The artefact holds a class's vectors of all encoders side by side."""

    name = "token"
    per_class = True

    def setup(self, backend, images, training):
        self.backend = backend
        self.labels, self.vectors = images.labels, training.vectors
        self.encoders = [encoder for encoder, _ in backend.token_pairs()]
        self.rows = _add_tokens(backend, images.labels, images.classes, training.vectors)
        self.learned = []
        for encoder, rows in zip(self.encoders, self.rows):
            table = encoder.get_input_embeddings().weight
            index = torch.tensor([row for ids in rows.values() for row in ids], device=table.device)
            # The optimiser holds only the new rows: over the whole table (T5's is 32,128 x 4,096 in SD3
            # and FLUX) Adam's two states would take twice the table, and every step would pass over it.
            # The table takes the gradient the text encoder gives it; its new rows' part moves to the
            # learned rows, added up over micro-batches as the table's own gradient would be, and the
            # step's result is written back into the table before the next forward pass.
            learned = torch.nn.Parameter(table.detach()[index].clone())
            table.requires_grad_(True)
            table.register_post_accumulate_grad_hook(
                lambda table, learned=learned, index=index: _move_gradient(table, learned, index)
            )
            self.learned.append((table, index, learned))
        self.prompts = [training.template.format(token_name(int(label))) for label in images.rows.label]
        return [{"params": [learned for _, _, learned in self.learned], "lr": training.lr, "weight_decay": 0.0}]

    def _write_back(self) -> None:
        """The learned rows into their tables, where the text encoders read them."""
        with torch.no_grad():
            for table, index, learned in self.learned:
                table.index_copy_(0, index, learned.to(table.dtype))

    def conditioning(self, picks):
        self._write_back()
        return self.backend.encode([self.prompts[i] for i in picks])

    def export(self, result):
        result.vectors = self.vectors
        self._write_back()
        tables = [encoder.get_input_embeddings().weight.detach().cpu() for encoder in self.encoders]
        for label in self.labels:
            result.tokens[label] = torch.cat([table[rows[label]] for table, rows in zip(tables, self.rows)], dim=1)

    def check(self, learned, labels, vectors, where):
        _check_classes(learned.tokens, labels, where)
        if vectors is not None and learned.vectors != vectors:
            raise ValueError(
                f"personalisation {where} has {learned.vectors} vector(s) per token, the method asks for {vectors}"
            )

    def apply(self, backend, learned):
        labels = sorted(learned.tokens)
        widths = [encoder.get_input_embeddings().weight.shape[1] for encoder, _ in backend.token_pairs()]
        width = next(iter(learned.tokens.values())).shape[1]
        if width != sum(widths):
            raise ValueError(
                f"the learned tokens are {width} wide, the text encoders of this {backend.name} model take "
                f"{' + '.join(map(str, widths))}: they were learned on another model"
            )
        for index, (encoder, tokenizer) in enumerate(backend.token_pairs()):
            start = sum(widths[:index])
            vectors = [learned.tokens[label][:, start : start + widths[index]].to(encoder.dtype) for label in labels]
            backend.add_tokens(encoder, tokenizer, vectors, [token_name(label) for label in labels])

    def prompt_names(self, classes):
        return [token_name(label) for label in range(len(classes))]


class ConditioningTarget(Target):
    """The text encoders' output itself (what the denoiser attends to, and the pooled embedding
    where the family has one), one per class, or one per k-means cluster of a class's CLIP image
    embeddings; started from the class prompt's."""

    name = "conditioning"
    per_class = True

    def setup(self, backend, images, training):
        rows = images.rows
        self.labels = images.labels
        self.cluster_of = np.zeros(len(rows), dtype=int)
        if training.clusters > 1:
            for members in images.members():
                self.cluster_of[members] = cluster_images(images.features[members], training.clusters, training.seed)
        self.row_labels = rows.label.to_numpy()
        self.keys = sorted({(int(label), int(c)) for label, c in zip(rows.label, self.cluster_of)})
        index_of = {key: i for i, key in enumerate(self.keys)}
        prompts = [training.template.format(images.classes[label]) for label, _ in self.keys]
        with torch.no_grad():
            start = backend.encode(prompts)
        self.learned = {key: torch.nn.Parameter(value.detach().clone()) for key, value in start.items()}
        self.row_conditioning = torch.tensor(
            [index_of[(int(label), int(c))] for label, c in zip(rows.label, self.cluster_of)]
        )
        return [{"params": list(self.learned.values()), "lr": training.lr, "weight_decay": 0.0}]

    def conditioning(self, picks):
        index = self.row_conditioning[torch.from_numpy(picks)]
        return {key: value[index] for key, value in self.learned.items()}

    def export(self, result):
        embeds = self.learned["prompt_embeds"].detach().cpu()
        pooled = self.learned.get("pooled_prompt_embeds")
        for label in self.labels:
            keys = [(i, cluster) for i, (key_label, cluster) in enumerate(self.keys) if key_label == label]
            result.conditionings[label] = embeds[[i for i, _ in keys]].clone()
            if pooled is not None:
                result.pooled[label] = pooled.detach().cpu()[[i for i, _ in keys]].clone()
            sizes = [int(np.sum((self.row_labels == label) & (self.cluster_of == cluster))) for _, cluster in keys]
            result.cluster_sizes[label] = torch.tensor(sizes)

    def check(self, learned, labels, vectors, where):
        _check_classes(learned.conditionings, labels, where)

    def plan(self, plan, learned):
        plan["cluster"] = assign_clusters(plan, learned.cluster_sizes)
        plan["prompt"] = [f"<learned conditioning {label}.{c}>" for label, c in zip(plan.label, plan.cluster)]
        return plan

    def text_inputs(self, backend, learned, batch):
        pipeline = backend.pipeline
        dtype, device = backend.denoiser.dtype, pipeline.device
        pairs = list(zip(batch.label.astype(int), batch.cluster.astype(int)))
        inputs = {"prompt_embeds": torch.stack([learned.conditionings[lb][c] for lb, c in pairs]).to(device, dtype)}
        if learned.pooled:
            inputs["pooled_prompt_embeds"] = torch.stack([learned.pooled[lb][c] for lb, c in pairs]).to(device, dtype)
        # The pipeline encodes the empty prompt for the unconditional branch of guidance itself.
        return inputs


class UNetTarget(Target):
    """The denoiser (a UNet, or the transformer of SD3 and FLUX), fine-tuned with class prompts: every
    weight (``full``) or LoRA adapters on the modules diffusers' LoRA training adapts (``lora``, peft)."""

    name = "unet"
    per_class = False

    def setup(self, backend, images, training):
        self.backend, self.unet = backend, backend.denoiser
        self.mode = training.unet
        self.trainable = trainable_unet_parameters(self.unet, training.unet, training.lora_rank, backend.lora_modules)
        self.unet.train()
        self.prompts = [training.template.format(images.classes[int(label)]) for label in images.rows.label]
        return [{"params": self.trainable, "lr": training.unet_lr, "weight_decay": 1e-2}]

    def conditioning(self, picks):
        with torch.no_grad():
            return self.backend.encode([self.prompts[i] for i in picks])

    def clip_gradients(self):
        torch.nn.utils.clip_grad_norm_(self.trainable, 1.0)

    def export(self, result):
        result.unet_mode = self.mode
        if self.mode == "full":
            state = self.unet.state_dict()
        else:
            from diffusers.utils import convert_state_dict_to_diffusers
            from peft.utils import get_peft_model_state_dict

            state = convert_state_dict_to_diffusers(get_peft_model_state_dict(self.unet))
        result.unet = {name: value.detach().cpu() for name, value in state.items()}

    def check(self, learned, labels, vectors, where):
        if not learned.unet:
            raise ValueError(f"personalisation {where} holds no UNet weights")

    def apply(self, backend, learned):
        if learned.unet_mode == "full":
            backend.denoiser.load_state_dict(learned.unet, strict=True)
        elif learned.unet_mode == "lora":
            prefix = backend.denoiser_name
            backend.pipeline.load_lora_weights({f"{prefix}.{name}": value for name, value in learned.unet.items()})


class TokenUNetTarget(Target):
    """Tokens and UNet learned together (DreamBooth-like): the UNet is conditioned on the token prompts."""

    name = "token_unet"
    per_class = False

    def __init__(self):
        self.token, self.unet = TokenTarget(), UNetTarget()

    def setup(self, backend, images, training):
        return self.token.setup(backend, images, training) + self.unet.setup(backend, images, training)

    def conditioning(self, picks):
        return self.token.conditioning(picks)

    def clip_gradients(self):
        self.unet.clip_gradients()

    def export(self, result):
        self.token.export(result)
        self.unet.export(result)

    def check(self, learned, labels, vectors, where):
        self.token.check(learned, labels, vectors, where)
        self.unet.check(learned, labels, vectors, where)

    def apply(self, backend, learned):
        self.unet.apply(backend, learned)
        self.token.apply(backend, learned)

    def prompt_names(self, classes):
        return self.token.prompt_names(classes)


TARGET_CLASSES = {target.name: target for target in (TokenTarget, ConditioningTarget, UNetTarget, TokenUNetTarget)}


def _move_gradient(table: torch.Tensor, learned: torch.Tensor, index: torch.Tensor) -> None:
    """Add the gradient of the table's new rows to theirs, and drop the table's."""
    rows = table.grad.index_select(0, index).to(learned.dtype)
    learned.grad = rows if learned.grad is None else learned.grad + rows
    table.grad = None


def make_target(name: str) -> Target:
    if name not in TARGET_CLASSES:
        raise ValueError(f"personalisation target {name!r} is not one of {list(TARGET_CLASSES)}")
    return TARGET_CLASSES[name]()


def _check_classes(learned: dict, labels: list[int], where: str) -> None:
    missing = sorted(set(labels) - set(learned))
    if missing:
        raise ValueError(f"personalisation {where} lacks classes {missing[:10]} ({len(missing)} in all)")


def _add_tokens(backend: Backend, labels: list[int], classes: list[str], vectors: int) -> list[dict[int, list[int]]]:
    """Add each class's token to every text encoder textual inversion extends (diffusers' loader),
    started from the class name's mean input embedding in that encoder.

    Returns, per encoder, the embedding rows of each class.
    """
    names = [token_name(label) for label in labels]
    rows = []
    for encoder, tokenizer in backend.token_pairs():
        table = encoder.get_input_embeddings().weight.detach()
        starts = []
        for label in labels:
            ids = tokenizer(classes[label], add_special_tokens=False).input_ids or [tokenizer.eos_token_id]
            starts.append(table[ids].mean(dim=0).repeat(vectors, 1))
        backend.add_tokens(encoder, tokenizer, starts, names)
        rows.append(
            {
                label: tokenizer.convert_tokens_to_ids([name] + [f"{name}_{i}" for i in range(1, vectors)])
                for label, name in zip(labels, names)
            }
        )
    return rows
