import dataclasses
import json
import math
import os

import pytest
import torch
from safetensors.torch import save_file

from augbench import classifier, evaluate, train
from augbench.files import write_json, write_manifest

from helpers import checkpoint_epoch

RECIPE = classifier.Recipe(
    arch="resnet18",
    image_size=16,
    epochs=2,
    batch_size=16,
    lr=0.05,
    crop_scale_min=0.5,
    hflip=False,
    eval_crop_ratio=1.0,
    num_workers=0,
)


def test_train_then_evaluate_writes_weights_recipe_and_metrics(miniworld, tmp_path):
    classes = str(miniworld / "classes.txt")
    weights = tmp_path / "model.safetensors"
    record = train.train([str(miniworld / "train" / "manifest.csv")], classes, str(weights), RECIPE, seed=0, threads=2)
    assert weights.exists() and record["n_train_images"] == 80
    assert json.loads(weights.with_suffix(".json").read_text())["recipe"]["arch"] == "resnet18"
    metrics = evaluate.evaluate(
        str(weights), str(miniworld / "val" / "manifest.csv"), classes, str(tmp_path / "m.json"), num_workers=0
    )
    assert 0 <= metrics["top1"] <= metrics["top5"] <= 100
    assert 0 <= metrics["ece"] <= 100
    assert metrics["n_val_images"] == 50
    assert set(metrics["per_class_top1"]) == {
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
    }
    written = json.loads((tmp_path / "m.json").read_text())
    assert written["top1"] == metrics["top1"] and written["ece"] == metrics["ece"]
    # The machine the model was trained on travels with its figures (augbench.expected names it).
    assert record["machine"]["threads"] == 2 and record["machine"]["gpu"] is None
    assert record["machine"]["cpu_kernels"] == torch.backends.cpu.get_cpu_capability()
    assert written["trained_on"] == record["machine"] and record["machine"]["cpu"]
    pins = record["machine"]["kernel_pins"]
    assert pins == {name: os.environ[name] for name in ("ONEDNN_MAX_CPU_ISA", "MKL_CBWR") if name in os.environ}


def test_evaluate_measures_calibration_from_the_softmax(miniworld, tmp_path):
    # A classifier that ignores its input and always says class 0 with probability 3 / (3 + 9) = 0.25:
    # it is right on class 0's 5 of the 50 validation images, 10%, so 15 points less often than it claims.
    model = classifier.build_model(RECIPE.arch, 10)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.tensor([math.log(3.0)] + [0.0] * 9))
    weights = tmp_path / "always_zero.safetensors"
    save_file(model.state_dict(), weights)
    write_json(classifier.recipe_path(weights), {"recipe": dataclasses.asdict(RECIPE), "seed": 0, "n_train_images": 0})
    val, classes = str(miniworld / "val" / "manifest.csv"), str(miniworld / "classes.txt")
    metrics = evaluate.evaluate(str(weights), val, classes, str(tmp_path / "m.json"), num_workers=0)
    assert metrics["top1"] == pytest.approx(10.0)
    assert metrics["ece"] == pytest.approx(15.0, abs=1e-4)
    assert json.loads((tmp_path / "m.json").read_text())["ece"] == pytest.approx(15.0, abs=1e-4)


def constant_model(tmp_path, biases: list[float]):
    """Weights of a classifier that ignores its input: its logits are ``biases``."""
    model = classifier.build_model(RECIPE.arch, len(biases))
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.tensor(biases))
    weights = tmp_path / "constant.safetensors"
    save_file(model.state_dict(), weights)
    write_json(classifier.recipe_path(weights), {"recipe": dataclasses.asdict(RECIPE), "seed": 0, "n_train_images": 0})
    return str(weights)


def test_evaluation_sets_are_scored_on_their_own_classes(miniworld, tmp_path):
    import shutil

    import pandas as pd

    # Logits log 3 for class 0, log 1.5 for class 2, 0 for the rest.
    weights = constant_model(tmp_path, [math.log(3.0), 0.0, math.log(1.5)] + [0.0] * 7)
    val, classes = str(miniworld / "val" / "manifest.csv"), str(miniworld / "classes.txt")
    # A set of the digits one and two in folders "a" and "b", with one broken file: restricted to
    # these two classes the model says "two" with probability 1.5 / 2.5 = 0.6 and is right on half.
    frame = pd.read_csv(val)
    for folder, label in (("a", 1), ("b", 2)):
        (tmp_path / "tree" / folder).mkdir(parents=True)
        for path in frame[frame.label == label].path:
            shutil.copy(path, tmp_path / "tree" / folder)
    (tmp_path / "tree" / "a" / "broken.png").write_bytes(b"not an image")
    (tmp_path / "two.tsv").write_text("a\tone\nb\ttwo\n")
    sets = [
        evaluate.read_evaluation_set("same", val, classes),
        evaluate.read_evaluation_set("pair", str(tmp_path / "tree"), classes, str(tmp_path / "two.tsv")),
    ]
    assert sets[1].classes == [1, 2] and sorted(set(sets[1].images.label)) == [1, 2]
    metrics = evaluate.evaluate(weights, val, classes, str(tmp_path / "m.json"), num_workers=0, evaluation_sets=sets)
    assert metrics["top1"] == metrics["top1_same"] == pytest.approx(10.0)  # always "zero": right on 5 of 50
    assert metrics["ece_same"] == pytest.approx(metrics["ece"])
    assert metrics["top1_pair"] == pytest.approx(50.0)
    assert metrics["ece_pair"] == pytest.approx(10.0, abs=1e-4)
    assert metrics["n_images_pair"] == 10 and metrics["n_unreadable_pair"] == 1
    written = json.loads((tmp_path / "m.json").read_text())
    assert written["top1_pair"] == metrics["top1_pair"]

    (tmp_path / "odd.tsv").write_text("a\tone\nb\televen\n")
    with pytest.raises(ValueError, match="names 1 class.* lacks, e.g. 'eleven'"):
        evaluate.read_evaluation_set("odd", str(tmp_path / "tree"), classes, str(tmp_path / "odd.tsv"))


def test_a_methods_seeds_read_each_set_once_and_score_as_each_alone(miniworld, tmp_path, monkeypatch):
    from augbench import images

    val, classes = str(miniworld / "val" / "manifest.csv"), str(miniworld / "classes.txt")
    paths = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = classifier.build_model("small_cnn", 10)
        paths.append(str(tmp_path / f"seed{seed}.safetensors"))
        save_file(model.state_dict(), paths[-1])
        record = {"recipe": dataclasses.asdict(dataclasses.replace(RECIPE, arch="small_cnn")), "seed": seed}
        write_json(classifier.recipe_path(paths[-1]), {**record, "n_train_images": 0})
    sets = [evaluate.read_evaluation_set("again", val, classes)]
    alone = [
        evaluate.evaluate(path, val, classes, str(tmp_path / f"alone{i}.json"), num_workers=0, evaluation_sets=sets)
        for i, path in enumerate(paths)
    ]
    reads = []
    read_image = images.load_rgb
    monkeypatch.setattr(images, "load_rgb", lambda path: reads.append(path) or read_image(path))
    outs = [str(tmp_path / f"together{i}.json") for i in range(3)]
    together = evaluate.evaluate_models(paths, val, classes, outs, num_workers=0, evaluation_sets=sets)
    assert together == alone  # every figure to the bit, per model
    assert [json.loads(open(out).read()) for out in outs] == json.loads(json.dumps(alone))
    assert len({metrics["ece"] for metrics in together}) == 3  # three different models were scored
    assert len(reads) == 2 * 50  # the validation set and the further set, once each for all three

    with pytest.raises(ValueError, match="3 models but 2 metrics files"):
        evaluate.evaluate_models(paths, val, classes, outs[:2], num_workers=0)


def test_same_seed_same_metrics(miniworld, tmp_path):
    classes = str(miniworld / "classes.txt")
    recipe = dataclasses.replace(RECIPE, arch="small_cnn")  # the torchvision path: the test above
    results = []
    for run in ("a", "b"):
        weights = tmp_path / f"{run}.safetensors"
        train.train([str(miniworld / "train" / "manifest.csv")], classes, str(weights), recipe, seed=4, threads=2)
        metrics = evaluate.evaluate(
            str(weights), str(miniworld / "val" / "manifest.csv"), classes, str(tmp_path / f"{run}.json"), num_workers=0
        )
        results.append(metrics["top1"])
    assert results[0] == results[1]


def test_added_images_are_combined_and_bad_labels_rejected(miniworld, tmp_path):
    import pandas as pd

    classes = str(miniworld / "classes.txt")
    real = str(miniworld / "train" / "manifest.csv")
    frame = pd.read_csv(real)
    write_manifest(tmp_path / "added.csv", frame.head(5))
    recipe = dataclasses.replace(RECIPE, arch="small_cnn", epochs=1)
    record = train.train([real, str(tmp_path / "added.csv")], classes, str(tmp_path / "m.safetensors"), recipe, seed=0)
    assert record["n_train_images"] == 85
    bad = frame.head(2).assign(label=10)
    write_manifest(tmp_path / "bad.csv", bad)
    with pytest.raises(ValueError, match="outside"):
        train.train([real, str(tmp_path / "bad.csv")], classes, str(tmp_path / "x.safetensors"), recipe, seed=0)


def test_a_batch_is_scaled_and_normalised_to_the_bit_as_each_image_alone():
    # The loader hands uint8 images and model_input normalises the batch; figures recorded
    # when each image was normalised in the loader must not move.
    from torchvision.transforms import v2 as T

    images = torch.randint(0, 256, (5, 3, 7, 9), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    each = T.Compose(
        [T.ToDtype(torch.float32, scale=True), T.Normalize(classifier.IMAGENET_MEAN, classifier.IMAGENET_STD)]
    )
    batch = classifier.model_input(images, torch.device("cpu"))
    assert batch.is_contiguous(memory_format=torch.channels_last)
    for image, normalised in zip(images, batch):
        assert torch.equal(normalised, each(image))


def test_unknown_architecture_is_named():
    with pytest.raises(ValueError, match="resnet_nope"):
        classifier.build_model("resnet_nope", 10)


def test_init_weights_start_the_network_and_a_new_class_count_gets_a_new_head(tmp_path):
    import torch

    source = classifier.build_model("resnet18", 1000)
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "w.pth")
    model = classifier.build_model("resnet18", 10)
    head_before = model.fc.weight.clone()
    classifier.initialise(model, str(tmp_path / "w.pth"))
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert torch.equal(model.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)
    assert torch.equal(model.fc.weight, head_before)  # 10 classes here, 1,000 there: the head stays new

    with pytest.raises(ValueError, match="does not fit ResNet: missing"):
        classifier.initialise(classifier.build_model("resnet34", 10), str(tmp_path / "w.pth"))
    state = source.state_dict()
    state["conv1.weight"] = state["conv1.weight"][:, :1]
    torch.save(state, tmp_path / "grey.pth")
    with pytest.raises(ValueError, match=r"shapes differ for \['conv1.weight'\]"):
        classifier.initialise(classifier.build_model("resnet18", 1000), str(tmp_path / "grey.pth"))


def test_training_from_a_weights_file_records_it(miniworld, tmp_path):
    from safetensors.torch import save_file

    classes = str(miniworld / "classes.txt")
    start = tmp_path / "start.safetensors"
    save_file(classifier.build_model("resnet18", 10).state_dict(), str(start))
    recipe = classifier.Recipe(**{**vars(RECIPE), "epochs": 1, "init_weights": str(start)})
    weights = tmp_path / "model.safetensors"
    train.train([str(miniworld / "train" / "manifest.csv")], classes, str(weights), recipe, seed=0, threads=2)
    assert json.loads(weights.with_suffix(".json").read_text())["recipe"]["init_weights"] == str(start)
    metrics = evaluate.evaluate(
        str(weights), str(miniworld / "val" / "manifest.csv"), classes, str(tmp_path / "m.json"), num_workers=0
    )
    assert metrics["n_val_images"] == 50


def test_killed_training_resumes_from_its_last_epoch_and_ends_as_an_uninterrupted_run(miniworld, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    # Enough epochs that the kill lands mid-run (one takes about a tenth of a second here).
    recipe = dataclasses.replace(RECIPE, arch="small_cnn", epochs=40)
    manifest, classes = str(miniworld / "train" / "manifest.csv"), str(miniworld / "classes.txt")
    weights = tmp_path / "model.safetensors"
    command = [sys.executable, "-m", "augbench.train", "--manifest", manifest, "--classes", classes]
    command += ["--out", str(weights), "--seed", "3", "--threads", "1", "--checkpoint-minutes", "0"]
    for field, value in dataclasses.asdict(recipe).items():
        if value is None:  # an unset option (init_weights) is left out, as the rule leaves it out
            continue
        command += ["--" + field.replace("_", "-"), str(value).lower() if isinstance(value, bool) else str(value)]
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = train.checkpoint_dir(weights)
    deadline = time.time() + 120
    while checkpoint_epoch(checkpoint) < 2 and job.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(job.pid, signal.SIGKILL)  # as a preempted or crashed job dies: no clean-up
    job.wait()
    killed_after = checkpoint_epoch(checkpoint)
    assert 2 <= killed_after < recipe.epochs and not weights.exists()

    record = train.train([manifest], classes, str(weights), recipe, seed=3, threads=1)
    # It went on from the last complete epoch (at most the one running at the kill is redone)...
    assert record["resumed_after_epoch"] in (killed_after, killed_after + 1)
    assert not checkpoint.exists()
    # ...and ended exactly where a run that was never interrupted ends.
    reference = tmp_path / "reference.safetensors"
    assert train.train([manifest], classes, str(reference), recipe, seed=3, threads=1)["resumed_after_epoch"] == 0
    resumed, uninterrupted = load_file(str(weights)), load_file(str(reference))
    assert all((resumed[name] == uninterrupted[name]).all() for name in uninterrupted)


@pytest.mark.parametrize(
    "minutes, keep, epochs_saved",
    [(0, False, [1, 2]), (0, True, [1, 2, 3]), (60, False, []), (60, True, [3])],
)
def test_checkpoints_are_written_at_most_once_per_interval_and_last_only_when_kept(
    miniworld, tmp_path, monkeypatch, minutes, keep, epochs_saved
):
    saved = []
    monkeypatch.setattr(train, "save_checkpoint", lambda folder, epoch, *rest: saved.append(epoch))
    manifest, classes = str(miniworld / "train" / "manifest.csv"), str(miniworld / "classes.txt")
    recipe = dataclasses.replace(RECIPE, arch="small_cnn", epochs=3)
    out = str(tmp_path / "model.safetensors")
    train.train([manifest], classes, out, recipe, seed=0, threads=1, keep_checkpoint=keep, checkpoint_minutes=minutes)
    assert saved == epochs_saved


def test_a_checkpoint_of_other_settings_is_not_resumed(miniworld, tmp_path):
    import torch

    manifest, classes = str(miniworld / "train" / "manifest.csv"), str(miniworld / "classes.txt")
    weights = tmp_path / "model.safetensors"
    # A checkpoint as a killed run with seed 0 leaves it; then the job is run with seed 1.
    model = classifier.build_model(RECIPE.arch, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    fingerprint = train.run_fingerprint([manifest], classes, RECIPE, seed=0)
    train.save_checkpoint(
        train.checkpoint_dir(weights),
        1,
        2.3,
        fingerprint,
        model,
        optimizer,
        train.warmup_cosine(optimizer, 10),
        torch.Generator(),
    )
    record = train.train([manifest], classes, str(weights), RECIPE, seed=1, threads=1)
    assert record["resumed_after_epoch"] == 0


def _frozen_batchnorm(build_model):
    """build_model with every BatchNorm replaced by torchvision's FrozenBatchNorm2d: normalising
    by fixed statistics makes a step independent of how the batch is split over processes."""
    import torch
    from torchvision.ops import FrozenBatchNorm2d

    def build(arch: str, num_classes: int) -> torch.nn.Module:
        model = build_model(arch, num_classes)
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, torch.nn.BatchNorm2d):
                    setattr(parent, name, FrozenBatchNorm2d(child.num_features))
        return model

    return build


def _train_as_process(rank: int, world: int, port: int, arguments: tuple) -> None:
    """One process of a torchrun-like launch (the environment torchrun sets), training with frozen BatchNorm."""

    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    train.build_model = _frozen_batchnorm(train.build_model)
    train.train(*arguments, threads=1)


# Every image whole (crop scale 1 and no flip), one batch an epoch: each step sees all images,
# however they are split over processes, so the steps' mean gradients agree up to float sums.
WHOLE_BATCH = dataclasses.replace(
    RECIPE, batch_size=20, epochs=3, crop_scale_min=1.0, hflip=False, eval_crop_ratio=1.0, num_workers=0
)


def test_two_gloo_processes_take_the_same_steps_as_one(miniworld, tmp_path, monkeypatch):
    """DDP as a multi-GPU job runs it, here with 2 CPU processes on gloo: the global batch is
    split over the processes and their gradients averaged, so the weights equal one process's.
    BatchNorm is frozen: in training mode it normalises over each process's share of the batch,
    which differs from one process by design (torchvision's reference recipe does the same
    without --sync-bn)."""
    import socket

    import pandas as pd
    import torch.multiprocessing
    from safetensors.torch import load_file

    frame = pd.read_csv(miniworld / "train" / "manifest.csv").groupby("label").head(2)
    assert len(frame) == WHOLE_BATCH.batch_size
    manifest, classes = str(tmp_path / "batch.csv"), str(miniworld / "classes.txt")
    write_manifest(manifest, frame)
    monkeypatch.setattr(train, "build_model", _frozen_batchnorm(train.build_model))
    start = train.build_model(WHOLE_BATCH.arch, 10).state_dict()
    single, double = tmp_path / "single.safetensors", tmp_path / "double.safetensors"
    train.train([manifest], classes, str(single), WHOLE_BATCH, seed=0, threads=1)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    arguments = ([manifest], classes, str(double), WHOLE_BATCH, 0, "cpu")
    torch.multiprocessing.spawn(_train_as_process, args=(2, port, arguments), nprocs=2, join=True)

    assert json.loads(double.with_suffix(".json").read_text())["processes"] == 2
    one, two = load_file(str(single)), load_file(str(double))
    weights = [name for name in one if name.endswith("weight")]
    moved = max((one[name] - start[name]).abs().max().item() for name in weights)
    apart = max((one[name] - two[name]).abs().max().item() for name in weights)
    assert moved > 1e-2, moved  # training changed the weights, so equal weights mean equal steps
    assert apart <= 1e-5 * moved, (apart, moved)  # float sums differ; a missing average gives ~3e-2


@pytest.mark.slow  # three processes that each import torch and torchvision: about 23 s
def test_torchrun_launches_training_on_two_gloo_processes(miniworld, tmp_path):
    """The command line a multi-GPU train job runs (torchrun -m augbench.train), on 2 CPU processes:
    it trains, writes one model and records the processes; evaluate reads it. (The steps of two
    processes equal one's: test_two_gloo_processes_take_the_same_steps_as_one, in the fast tier.)"""
    import subprocess
    import sys

    recipe = dataclasses.replace(RECIPE, epochs=1)
    manifest, classes = str(miniworld / "train" / "manifest.csv"), str(miniworld / "classes.txt")
    double = tmp_path / "double.safetensors"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "augbench.train", "--manifest", manifest, "--classes", classes, "--out", str(double)]
    command += ["--seed", "0", "--threads", "1", "--device", "cpu"]
    for field, value in dataclasses.asdict(recipe).items():
        if value is None:  # an unset option (init_weights) is left out, as the rule leaves it out
            continue
        command += ["--" + field.replace("_", "-"), str(value).lower() if isinstance(value, bool) else str(value)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(double.with_suffix(".json").read_text())["processes"] == 2
    assert not train.checkpoint_dir(double).exists()
    val = str(miniworld / "val" / "manifest.csv")
    assert evaluate.evaluate(str(double), val, classes, str(tmp_path / "m.json"), num_workers=0)["n_val_images"] == 50


def test_the_small_cnn_classifies_16_and_32_pixel_images_and_takes_a_weights_file(tmp_path):
    import torch
    from safetensors.torch import save_file

    model = classifier.build_model("small_cnn", 10)
    for size in (16, 32):
        assert model(torch.zeros(2, 3, size, size)).shape == (2, 10)
    source = classifier.build_model("small_cnn", 1000)
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    classifier.initialise(model, str(tmp_path / "w.safetensors"))  # only the last layer differs: left new
    first = next(name for name in model.state_dict() if name.endswith("weight"))
    assert torch.equal(model.state_dict()[first], source.state_dict()[first])


def _train_command(manifest, classes, recipe, seeds_and_outs):
    command = ["--manifest", manifest, "--classes", classes, "--threads", "1"]
    for seed, out in seeds_and_outs:
        command += ["--seed", str(seed), "--out", str(out)]
    for field, value in dataclasses.asdict(recipe).items():
        if value is not None:
            command += ["--" + field.replace("_", "-"), str(value).lower() if isinstance(value, bool) else str(value)]
    return command


def test_one_job_of_several_seeds_gives_each_seed_the_weights_of_its_own_job(miniworld, tmp_path):
    from safetensors.torch import load_file

    manifest, classes = str(miniworld / "train" / "manifest.csv"), str(miniworld / "classes.txt")
    recipe = dataclasses.replace(RECIPE, arch="small_cnn", epochs=1)
    together = [(5, tmp_path / "seed5.safetensors"), (6, tmp_path / "seed6.safetensors")]
    train.main(_train_command(manifest, classes, recipe, together))
    assert not any(train.checkpoint_dir(out).exists() for _, out in together)
    for seed, out in together:
        alone = tmp_path / f"alone{seed}.safetensors"
        train.main(_train_command(manifest, classes, recipe, [(seed, alone)]))
        ours, reference = load_file(str(out)), load_file(str(alone))
        assert all(torch_equal(ours[name], reference[name]) for name in reference)
    seed5, seed6 = load_file(str(together[0][1])), load_file(str(together[1][1]))
    assert not all(torch_equal(seed5[name], seed6[name]) for name in seed5)

    metrics = [tmp_path / "seed5.json.metrics", tmp_path / "seed6.json.metrics"]
    evaluate.main(
        ["--model", str(together[0][1]), "--out", str(metrics[0]), "--model", str(together[1][1])]
        + ["--out", str(metrics[1]), "--manifest", str(miniworld / "val" / "manifest.csv"), "--classes", classes]
        + ["--num-workers", "0"]
    )
    assert [json.loads(path.read_text())["seed"] for path in metrics] == [5, 6]


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_a_failed_job_of_several_seeds_keeps_the_finished_seeds(miniworld, tmp_path, monkeypatch):
    """Snakemake removes a failed job's outputs; the finished seeds' last checkpoints stay, so the
    rerun finds them complete and trains only the seed that failed."""
    manifest, classes = str(miniworld / "train" / "manifest.csv"), str(miniworld / "classes.txt")
    recipe = dataclasses.replace(RECIPE, arch="small_cnn", epochs=2)
    seeds = [(0, tmp_path / "seed0.safetensors"), (1, tmp_path / "seed1.safetensors")]
    real_train = train.train

    def fails_on_seed_1(*args, **kwargs):
        if args[4] == 1:
            raise RuntimeError("out of memory")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(train, "train", fails_on_seed_1)
    with pytest.raises(RuntimeError):
        train.main(_train_command(manifest, classes, recipe, seeds))
    for _, out in seeds:  # as Snakemake does with a failed job's outputs
        out.unlink(missing_ok=True)
        out.with_suffix(".json").unlink(missing_ok=True)
    monkeypatch.setattr(train, "train", real_train)
    train.main(_train_command(manifest, classes, recipe, seeds))
    records = [json.loads(out.with_suffix(".json").read_text()) for _, out in seeds]
    assert [record["resumed_after_epoch"] for record in records] == [recipe.epochs, 0]
    assert not any(train.checkpoint_dir(out).exists() for _, out in seeds)


def test_seeds_and_weights_files_must_pair(miniworld, tmp_path, capsys):
    manifest, classes = str(miniworld / "train" / "manifest.csv"), str(miniworld / "classes.txt")
    command = _train_command(manifest, classes, RECIPE, [(0, tmp_path / "a.safetensors")]) + ["--seed", "1"]
    with pytest.raises(SystemExit):
        train.main(command)
    assert "2 --seed but 1 --out" in capsys.readouterr().err
