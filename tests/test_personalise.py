"""Personalisation learns something that generation then actually uses, and generation
refuses artefacts that do not fit the method."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from augbench import generate, personalisation, personalise
from augbench.files import read_classes, write_classes, write_manifest
from augbench.methods import SettingError
from augbench.shards import shard_block

from helpers import as_a_new_job


@pytest.fixture(scope="module")
def subset(miniworld, tmp_path_factory):
    """Three real images each of the mini-world's first four classes, and a list of those classes."""
    folder = tmp_path_factory.mktemp("subset")
    train = pd.read_csv(miniworld / "train" / "manifest.csv")
    write_manifest(folder / "subset.csv", train[train.label < 4].groupby("label").head(3)[["path", "label"]])
    write_classes(folder / "classes.txt", read_classes(miniworld / "classes.txt")[:4])
    return str(folder / "subset.csv")


def _classes(subset: str) -> str:
    return str(Path(subset).parent / "classes.txt")


def _learn(tiny_pipeline, miniworld, subset, out, shard=0, shards=1, embeddings=None, **options):
    settings = dict(steps=20, lr=0.05, unet_lr=0.01, batch_size=2)
    settings.update(options)
    training = personalisation.Training(**settings)
    job = dict(shard=shard, shards=shards, embeddings=embeddings)
    as_a_new_job()  # a precision or device of its own
    return personalise.personalise(tiny_pipeline, _classes(subset), subset, str(out), training, **job)


def _generate(tiny_pipeline, subset, out_dir, steps=1, batch_size=8, **options) -> pd.DataFrame:
    sampling = generate.Sampling(tiny_pipeline, steps=steps, batch_size=batch_size)
    return generate.generate(_classes(subset), subset, str(out_dir), sampling, generate.Generation(**options))


def _images(tiny_pipeline, miniworld, subset, out_dir, **options) -> list[np.ndarray]:
    plan = _generate(tiny_pipeline, subset, out_dir, steps=3, batch_size=12, **options)
    return [np.asarray(Image.open(path), dtype=float) for path in plan.path]


def _difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(x - y).mean() for x, y in zip(a, b)]))


@pytest.mark.parametrize(
    "target, options",
    [("token", {"vectors": 1}), ("conditioning", {}), ("unet", {"unet": "lora"})],
)
def test_what_is_learned_changes_the_images_and_nothing_learned_changes_nothing(
    target, options, tiny_pipeline, miniworld, subset, tmp_path
):
    classname = _images(tiny_pipeline, miniworld, subset, tmp_path / "classname")
    checks = {"personalised": target, "vectors": options.get("vectors")}
    # A learning rate of zero leaves each token, conditioning or LoRA where it starts:
    # at the class name's embedding, the class prompt's conditioning, a zero update.
    # Those must give the class-name images back, so the artefact goes through faithfully
    # (one step: at that rate more steps move nothing either)...
    untrained = tmp_path / "untrained.safetensors"
    _learn(tiny_pipeline, miniworld, subset, untrained, target=target, lr=1e-30, unet_lr=1e-30, steps=1, **options)
    same = _images(tiny_pipeline, miniworld, subset, tmp_path / "untrained", personalisation=[str(untrained)], **checks)
    assert _difference(same, classname) < 0.5
    # ...and what training learned must show in the images.
    trained = tmp_path / "trained.safetensors"
    _learn(tiny_pipeline, miniworld, subset, trained, target=target, **options)
    learned = _images(tiny_pipeline, miniworld, subset, tmp_path / "trained", personalisation=[str(trained)], **checks)
    assert _difference(learned, classname) > 2.0


def test_token_artefact_holds_each_class_of_its_shard_with_its_vectors(tiny_pipeline, miniworld, subset, tmp_path):
    out = tmp_path / "shard1.safetensors"
    # Four classes in two shards: shard 1 holds classes 2 and 3.
    _learn(tiny_pipeline, miniworld, subset, out, target="token", vectors=2, shards=2, shard=1, steps=2)
    with safe_open(str(out), framework="pt") as handle:
        assert sorted(handle.keys()) == ["token.2", "token.3"]
        assert handle.get_tensor("token.2").shape[0] == 2
        assert handle.metadata()["target"] == "token" and handle.metadata()["vectors"] == "2"


def test_textual_inversion_steps_only_the_new_rows_and_learns_them_as_the_whole_table_would(
    tiny_pipeline, miniworld, subset, tmp_path, monkeypatch
):
    # Two classes of two vectors each: the optimiser must hold 4 rows per text encoder, not the
    # vocabulary, and the learned rows must be what Adam over the whole table, with every other
    # row's gradient zeroed, learns (the rows' gradients and updates are the same numbers).
    stepped = []
    adamw = torch.optim.AdamW

    def recording(groups):
        stepped.extend(parameter.shape for group in groups for parameter in group["params"])
        return adamw(groups)

    monkeypatch.setattr(torch.optim, "AdamW", recording)
    run = dict(target="token", vectors=2, shards=2, shard=1, steps=3, micro_batch=1, batch_size=2)
    rows = _learned(_learn(tiny_pipeline, miniworld, subset, tmp_path / "rows.safetensors", **run))
    assert stepped and all(shape[0] == 4 for shape in stepped)

    class WholeTable(personalisation.TokenTarget):
        """Adam over each whole input-embedding table, every other row's gradient zeroed (the earlier way)."""

        def setup(self, backend, images, training):
            self.backend, self.labels, self.vectors = backend, images.labels, training.vectors
            self.encoders = [encoder for encoder, _ in backend.token_pairs()]
            self.rows = personalisation._add_tokens(backend, images.labels, images.classes, training.vectors)
            self.learned, tables = [], []
            for encoder, rows in zip(self.encoders, self.rows):
                table = encoder.get_input_embeddings().weight.requires_grad_(True)
                mask = torch.zeros(table.shape[0], dtype=torch.bool)
                mask[[row for ids in rows.values() for row in ids]] = True
                table.register_hook(lambda grad, mask=mask: grad * mask.to(grad.dtype)[:, None])
                tables.append(table)
            labels = images.rows.label
            self.prompts = [training.template.format(personalisation.token_name(int(label))) for label in labels]
            return [{"params": tables, "lr": training.lr, "weight_decay": 0.0}]

    monkeypatch.setitem(personalisation.TARGET_CLASSES, "token", WholeTable)
    stepped.clear()
    table = _learned(_learn(tiny_pipeline, miniworld, subset, tmp_path / "table.safetensors", **run))
    assert stepped and all(shape[0] > 1000 for shape in stepped)  # the vocabulary: the old way
    assert torch.equal(rows, table)


def test_generation_refuses_missing_or_mismatched_artefacts(tiny_pipeline, miniworld, subset, tmp_path):
    artefact = tmp_path / "tokens.safetensors"
    _learn(tiny_pipeline, miniworld, subset, artefact, target="token", vectors=2, steps=1)
    out = tmp_path / "g"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _generate(tiny_pipeline, subset, out, personalisation=["nope"], personalised="token")
    with pytest.raises(ValueError, match="2 vector\\(s\\) per token, the method asks for 1"):
        _generate(tiny_pipeline, subset, out, personalisation=[str(artefact)], personalised="token", vectors=1)
    with pytest.raises(ValueError, match="holds target 'token', the method asks for 'conditioning'"):
        _generate(tiny_pipeline, subset, out, personalisation=[str(artefact)], personalised="conditioning")
    half = tmp_path / "half.safetensors"
    _learn(tiny_pipeline, miniworld, subset, half, target="token", vectors=2, steps=1, shards=2, shard=0)
    with pytest.raises(ValueError, match=r"lacks classes \[2, 3\]"):
        _generate(tiny_pipeline, subset, out, personalisation=[str(half)], personalised="token", vectors=2)


def test_a_class_without_real_images_is_named(tiny_pipeline, miniworld, subset, tmp_path):
    frame = pd.read_csv(subset)
    write_manifest(tmp_path / "no_three.csv", frame[frame.label != 3])
    write_classes(tmp_path / "classes.txt", read_classes(_classes(subset)))
    with pytest.raises(ValueError, match=r"classes \['three'\] have no images"):
        _learn(tiny_pipeline, miniworld, str(tmp_path / "no_three.csv"), tmp_path / "x.safetensors", target="token")


def test_cluster_conditionings_follow_the_clusters(tiny_pipeline, miniworld, subset, tmp_path):
    position = pd.read_csv(subset).groupby("label").cumcount().to_numpy()
    embeddings = tmp_path / "subset.npy"
    # Two clear groups within every class: its first two images alike, the third apart.
    features = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]])[position]
    np.save(embeddings, features)
    out = tmp_path / "clusters.safetensors"
    learned = _learn(
        tiny_pipeline, miniworld, subset, out, target="conditioning", clusters=2, embeddings=str(embeddings), steps=2
    )
    for label in range(4):
        assert learned.conditionings[label].shape[0] == 2
        assert sorted(learned.cluster_sizes[label].tolist()) == [1, 2]
    plan = pd.DataFrame({"label": [0] * 300, "seed": range(300)})
    clusters = personalisation.assign_clusters(plan, learned.cluster_sizes)
    big = int(np.argmax(learned.cluster_sizes[0].numpy()))
    assert 0.55 < np.mean(clusters == big) < 0.8  # two thirds of the images, as the cluster holds


def test_shards_partition_the_classes():
    shards = [shard_block(1000, k, 7) for k in range(7)]
    assert sorted(label for shard in shards for label in shard) == list(range(1000))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    with pytest.raises(ValueError, match="shard 7 is not in 0..6"):
        shard_block(1000, 7, 7)


def _learned(result) -> torch.Tensor:
    """Everything a personalisation learned, as one vector."""
    parts = [result.tokens, result.conditionings, result.unet]
    return torch.cat([table[key].flatten().float() for table in parts for key in sorted(table)])


@pytest.mark.parametrize(
    "target, options, micro_batch",
    [
        # 4 classes x 3 images per step, in passes of 5, 5 and 2 images.
        ("token", {"vectors": 1}, 5),
        ("conditioning", {}, 5),
        # 3 images per step, in passes of 2 and 1.
        ("unet", {"unet": "lora"}, 2),
    ],
)
def test_micro_batches_give_the_whole_batch_update(
    target, options, micro_batch, tiny_pipeline, miniworld, subset, tmp_path, monkeypatch
):
    # Plain SGD moves each parameter by its gradient, so a wrongly scaled micro-batch loss
    # shows (AdamW's first step would hide a constant factor).
    monkeypatch.setattr(torch.optim, "AdamW", lambda groups: torch.optim.SGD(groups))
    run = dict(target=target, steps=2, batch_size=3, lr=50.0, unet_lr=50.0, **options)
    start = _learned(
        _learn(tiny_pipeline, miniworld, subset, tmp_path / "start", **{**run, "lr": 1e-30, "unet_lr": 1e-30})
    )
    whole = _learned(_learn(tiny_pipeline, miniworld, subset, tmp_path / "whole", **run))
    parts = _learned(_learn(tiny_pipeline, miniworld, subset, tmp_path / "parts", micro_batch=micro_batch, **run))
    move = (whole - start).abs().max()
    assert move > 1e-3
    assert (parts - whole).abs().max() <= 1e-3 * move


def test_checkpointing_and_bfloat16_keep_the_update(tiny_pipeline, miniworld, subset, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.optim, "AdamW", lambda groups: torch.optim.SGD(groups))
    run = dict(target="token", steps=1, batch_size=2, lr=50.0)
    start = _learned(_learn(tiny_pipeline, miniworld, subset, tmp_path / "start", **{**run, "lr": 1e-30}))
    plain = _learned(_learn(tiny_pipeline, miniworld, subset, tmp_path / "plain", **run)) - start
    checkpointed = _learned(
        _learn(tiny_pipeline, miniworld, subset, tmp_path / "ckpt", gradient_checkpointing=True, **run)
    )
    assert (checkpointed - start - plain).abs().max() <= 1e-3 * plain.abs().max()
    low = _learned(_learn(tiny_pipeline, miniworld, subset, tmp_path / "bf16", precision="bfloat16", **run)) - start
    assert torch.nn.functional.cosine_similarity(low, plain, dim=0) > 0.9


@pytest.mark.parametrize("micro_batch", [0, -4])
def test_a_bad_micro_batch_is_named(micro_batch, tiny_pipeline, miniworld, subset, tmp_path):
    with pytest.raises(ValueError, match=f"micro_batch must be a positive number of images .*not {micro_batch}"):
        _learn(tiny_pipeline, miniworld, subset, tmp_path / "x.safetensors", target="token", micro_batch=micro_batch)


def test_token_and_unet_together_hold_both_and_generation_loads_both(tiny_pipeline, miniworld, subset, tmp_path):
    out = tmp_path / "token_unet.safetensors"
    learned = _learn(tiny_pipeline, miniworld, subset, out, target="token_unet", unet="lora", vectors=2, steps=2)
    assert sorted(learned.tokens) == [0, 1, 2, 3] and learned.tokens[0].shape[0] == 2
    assert learned.unet and all("lora" in name for name in learned.unet) and learned.unet_mode == "lora"
    plan = _generate(
        tiny_pipeline, subset, tmp_path / "g", personalisation=[str(out)], personalised="token_unet", vectors=2
    )
    assert plan.prompt.tolist()[0] == "a photo of a <class-0>" and len(plan) == 12


@pytest.mark.parametrize(
    "options, key",
    [({"target": "token", "clusters": 2}, "personalise.clusters"), ({"target": "unet"}, "personalise.shards")],
)
def test_a_combination_the_registry_refuses_is_refused_before_the_model_loads(options, key, subset, tmp_path):
    training = personalisation.Training(**options)
    with pytest.raises(SettingError) as error:
        personalise.personalise("no-model", _classes(subset), subset, str(tmp_path / "x"), training, shards=2)
    assert error.value.key == key


def _free_port() -> int:
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return free.getsockname()[1]


def _personalise_as_process(rank: int, world: int, port: int, jobs: list[tuple]) -> None:
    """One process of a torchrun-like launch (the environment torchrun sets), learning each job with plain SGD."""
    import os

    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    torch.optim.AdamW = lambda groups: torch.optim.SGD(groups)
    for model, classes, subset, out, training in jobs:
        personalise.personalise(model, classes, subset, out, training, device="cpu")


@pytest.mark.slow
def test_two_gloo_processes_learn_what_one_learns(tiny_pipeline, subset, tmp_path, monkeypatch):
    """A multi-GPU personalisation job, here 2 CPU processes on gloo: each passes its share of
    the step's batch (token: 12 images as 6 and 6; LoRA: 3 as 2 and 1) and the gradients are
    summed, so the artefact equals one process's. Plain SGD moves each parameter by its
    gradient, so an average where a sum belongs (half the step) shows; AdamW would hide it."""
    import torch.multiprocessing

    monkeypatch.setattr(torch.optim, "AdamW", lambda groups: torch.optim.SGD(groups))
    runs = {"token": dict(target="token"), "lora": dict(target="unet", unet="lora")}
    jobs, alone, start = [], {}, {}
    for name, options in runs.items():
        training = personalisation.Training(**options, steps=2, batch_size=3, lr=50.0, unet_lr=50.0)
        still = personalisation.Training(**options, steps=2, batch_size=3, lr=1e-30, unet_lr=1e-30)
        job = (tiny_pipeline, _classes(subset), subset)
        start[name] = _learned(personalise.personalise(*job, str(tmp_path / "s"), still, device="cpu"))
        alone[name] = _learned(personalise.personalise(*job, str(tmp_path / "a"), training, device="cpu"))
        jobs.append((tiny_pipeline, _classes(subset), subset, str(tmp_path / f"{name}.safetensors"), training))
    torch.multiprocessing.spawn(_personalise_as_process, args=(2, _free_port(), jobs), nprocs=2, join=True)

    for name in runs:
        with safe_open(str(tmp_path / f"{name}.safetensors"), framework="pt") as handle:
            together = torch.cat([handle.get_tensor(key).flatten().float() for key in sorted(handle.keys())])
        move = (alone[name] - start[name]).abs().max()
        apart = (together - alone[name]).abs().max()
        assert move > 1e-3, (name, move)  # training moved it, so equal artefacts mean equal steps
        assert apart <= 1e-5 * move, (name, apart, move)  # float sums differ (~5e-7); an average gives ~0.5


def test_gradients_are_summed_in_buckets_of_one_kind_in_their_order():
    float32 = [torch.zeros(n) for n in (10, 10, 30, 5)]  # 40, 40, 120 and 20 bytes
    assert personalise.gradient_buckets(float32, bucket_bytes=100) == [[0, 1], [2], [3]]
    mixed = [torch.zeros(2), torch.zeros(2, dtype=torch.bfloat16), torch.zeros(2)]
    assert personalise.gradient_buckets(mixed, bucket_bytes=100) == [[0], [1], [2]]
    assert personalise.gradient_buckets([], bucket_bytes=100) == []


def test_summed_gradients_return_to_their_parameters(tmp_path):
    """One gloo process: the sum is the gradient itself, so what comes back shows each bucket's
    parts returned to their own parameters, in their shapes (the sum over two is a slow test)."""
    parameters = [torch.nn.Parameter(torch.zeros(shape)) for shape in [(3, 4), (5,), (2, 2, 2), (7,)]]
    for k, parameter in enumerate(parameters):
        parameter.grad = torch.arange(parameter.numel(), dtype=torch.float32).view_as(parameter) + 100 * k
    parameters.append(torch.nn.Parameter(torch.zeros(2)))  # no gradient: left alone
    expected = [parameter.grad.clone() for parameter in parameters[:-1]]
    store = f"file://{tmp_path / 'store'}"
    torch.distributed.init_process_group("gloo", init_method=store, rank=0, world_size=1)
    try:
        personalise.sum_gradients(parameters, bucket_bytes=64)  # buckets [0], [1, 2], [3]
    finally:
        torch.distributed.destroy_process_group()
    assert all(torch.equal(parameter.grad, want) for parameter, want in zip(parameters, expected))
    assert parameters[-1].grad is None


def test_a_step_is_shared_out_over_the_processes_whole_and_evenly():
    for size, processes in [(12, 2), (3, 2), (40, 8), (7, 7)]:
        shares = [personalise.process_share(size, rank, processes) for rank in range(processes)]
        assert [i for share in shares for i in range(share.start, share.stop)] == list(range(size))
        assert max(s.stop - s.start for s in shares) - min(s.stop - s.start for s in shares) <= 1
    with pytest.raises(ValueError, match="a step's 3 images cannot be split over 4 processes"):
        personalise.process_share(3, 0, 4)


def test_float16_on_a_cpu_is_refused_before_the_model_loads(subset, tmp_path):
    training = personalisation.Training(target="token", precision="float16")
    with pytest.raises(ValueError, match="precision float16 needs a GPU"):
        personalise.personalise("no-model", _classes(subset), subset, str(tmp_path / "x"), training, device="cpu")


@pytest.mark.slow
def test_torchrun_launches_personalisation_on_two_gloo_processes(tiny_pipeline, subset, tmp_path):
    """The command line a method of `processes: 2` runs (torchrun -m augbench.personalise), on 2
    CPU processes: it writes one artefact, the one a single process writes."""
    import os
    import subprocess
    import sys

    options = ["--model", tiny_pipeline, "--classes", _classes(subset), "--subset", subset, "--device", "cpu"]
    options += ["--target", "token", "--steps", "2", "--batch-size", "3", "--lr", "0.05"]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    together = tmp_path / "together.safetensors"
    command = [*launch, "-m", "augbench.personalise", *options, "--threads", "1", "--out", str(together)]
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on 2 process(es)" in result.stderr
    personalise.main([*options, "--out", str(tmp_path / "alone.safetensors")])
    with safe_open(str(together), framework="pt") as two, safe_open(str(tmp_path / "alone.safetensors"), "pt") as one:
        assert sorted(two.keys()) == sorted(one.keys()) == ["token.0", "token.1", "token.2", "token.3"]
        for key in one.keys():
            assert torch.allclose(two.get_tensor(key), one.get_tensor(key), atol=1e-6), key
