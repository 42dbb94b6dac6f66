"""GPU hours of a preset on one GPU, from the throughputs that benchmarks/gpu.py measured.

    python benchmarks/cost_model.py --gpu benchmarks/gpu-NVIDIA_H100_80GB_HBM3.json \
        --config configs/imagenet10.yaml > cost.md

Each method's own jobs come from the preset's dry run (on stub data, as bench_dag); its
GPU hours from the images each of its stages processes over that stage's measured
images/s:
- training: seeds x epochs x (real + added images) / T_train (ResNet-50, AMP);
- evaluation: seeds x validation images / T_train (forward only is faster: an upper bound);
- generation: added images x (steps / 25) x (strength for image variations)
  / keep share (zero-shot) / T_gen (SD-1.5 at 512 px, batch 16, guidance on; half
  the time without guidance);
- personalisation: steps x batch images of UNet forward and backward, per class for the
  token and conditioning targets, / T_personalise (or T_lora for UNet targets);
- shared: pool, subset and validation embedding / T_embed (ViT-L/14).
Retrieval itself runs on CPU.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
IMAGENET_TRAIN, IMAGENET_VAL = 1_281_167, 50_000
MEASURED_STEPS = 25  # gpu.py's generation runs 25 DPM-Solver++ steps
SHARED = "(shared)"


def resolved_config(path: str) -> dict:
    """The preset with its method registry merged in and the schema's defaults filled in, as the workflow sees it."""
    from augbench.study import resolve

    return resolve(yaml.safe_load(Path(path).read_text()))


def jobs_per_method(output: str) -> dict[str, Counter]:
    """Method (or SHARED) -> rule -> jobs, from a dry run's printed jobs."""
    jobs: dict[str, Counter] = defaultdict(Counter)
    for block in re.split(r"^(?=(?:local)?rule \w+:)", output, flags=re.M):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        if not rule or rule.group(1) == "all":
            continue
        method = re.search(r"^\s+wildcards:.*\bmethod=([\w.-]+)", block, re.M)
        jobs[method.group(1) if method else SHARED][rule.group(1)] += 1
    return dict(jobs)


def dry_run_jobs(config_path: str) -> dict[str, Counter]:
    import subprocess

    from augbench.stub import make_stub

    with tempfile.TemporaryDirectory() as tmp:
        make_stub(config_path, tmp)
        (Path(tmp) / "resources").symlink_to(REPO / "resources")
        command = [sys.executable, "-m", "snakemake", "--directory", tmp, "--snakefile", str(REPO / "Snakefile")]
        command += ["--configfile", str(Path(config_path).resolve()), "-n", "all"]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return jobs_per_method(output)


def throughputs(gpu: dict) -> dict[str, float]:
    """The images/s the model uses, by name, from gpu.py's JSON."""

    def pick(pattern: str) -> float:
        found = [value for key, value in gpu.items() if re.fullmatch(pattern, key)]
        if len(found) != 1:
            raise ValueError(f"the GPU figures have {len(found)} keys matching {pattern!r}, not 1")
        return float(found[0])

    return {
        "train": pick(r"train_resnet50_224px_amp_images_per_s"),
        "generate": pick(r"gen_sd15_512px_batch16_images_per_s"),
        "personalise": pick(r"personalise_sd15_512px_conditioning_images_per_s"),
        "lora": pick(r"personalise_sd15_512px_lora_images_per_s"),
        "embed": pick(r"embed_ViT_L_14_images_per_s"),
    }


def method_hours(config: dict, speed: dict[str, float], train_images: int, val_images: int) -> dict[str, dict]:
    """Method -> stage -> GPU hours on one GPU of the measured kind."""
    real = real_images(config, train_images)
    seeds, epochs = len(config["seeds"]), config["classifier"]["epochs"]
    hours = {}
    for name, method in config["methods"].items():
        added = (
            real * (method.get("real_multiplier", 1) - 1)
            if method["kind"] == "real"
            else added_images(config, method, real)
        )
        stages = {
            "train": seeds * epochs * (real + added) / speed["train"] / 3600,
            "evaluate": seeds * val_images / speed["train"] / 3600,
        }
        if method["kind"] == "generate":
            per_image = method["steps"] / MEASURED_STEPS * (method["strength"] or 1.0)
            if method["guidance_scale"] <= 1.0:
                per_image /= 2  # no classifier-free guidance: one UNet pass per step, not two
            generated = added / (method["zero_shot_keep"] or 1.0)
            stages["generate"] = generated * per_image / speed["generate"] / 3600
            if method.get("personalise"):
                stages["personalise"] = personalise_hours(config, method["personalise"], speed)
        hours[name] = stages
    return hours


def real_images(config: dict, train_images: int) -> int:
    """The subset's size: a fraction of the training set, or images per class."""
    if config["subset"]["fraction"]:
        return round(train_images * config["subset"]["fraction"])
    return config["subset"]["per_class"] * n_classes(config)


def n_classes(config: dict) -> int:
    return sum(1 for line in (REPO / config["dataset"]["classes"]).read_text().splitlines() if line.strip())


def added_images(config: dict, method: dict, real: int) -> int:
    per_class = method.get("per_class") or config["augment"]["per_class"]
    return per_class * n_classes(config) if per_class else real


def personalise_hours(config: dict, params: dict, speed: dict[str, float]) -> float:
    from augbench.methods import PER_CLASS_TARGETS

    images = params["steps"] * params["batch_size"]
    if params["target"] in PER_CLASS_TARGETS:
        return n_classes(config) * images / speed["personalise"] / 3600
    return images / speed["lora"] / 3600


def shared_hours(speed: dict[str, float], pool_images: int, real: int, val_images: int) -> dict[str, float]:
    return {
        "embed pool": pool_images / speed["embed"] / 3600,
        "embed subset and validation": (real + val_images) / speed["embed"] / 3600,
    }


def render(jobs: dict[str, Counter], hours: dict[str, dict], shared: dict[str, float], card: str) -> str:
    lines = [
        f"| method | its own jobs | GPU hours on one {card} (stage: hours) | total |",
        "| --- | --- | --- | ---: |",
    ]
    for name, stages in hours.items():
        counted = ", ".join(f"{n} {rule}" for rule, n in sorted(jobs.get(name, {}).items()))
        parts = ", ".join(f"{stage} {value:,.1f}" for stage, value in stages.items())
        lines.append(f"| `{name}` | {counted} | {parts} | {sum(stages.values()):,.1f} |")
    counted = ", ".join(f"{n} {rule}" for rule, n in sorted(jobs.get(SHARED, {}).items()))
    parts = ", ".join(f"{stage} {value:,.1f}" for stage, value in shared.items())
    lines.append(f"| shared | {counted} | {parts} | {sum(shared.values()):,.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", required=True, help="the JSON benchmarks/gpu.sh wrote")
    parser.add_argument("--config", default=str(REPO / "configs" / "imagenet10.yaml"))
    parser.add_argument("--train-images", type=int, default=IMAGENET_TRAIN, help="the full training set's size")
    parser.add_argument("--val-images", type=int, default=IMAGENET_VAL)
    parser.add_argument("--pool-images", type=int, default=1_000_000, help="the pool embedded (shared by methods)")
    args = parser.parse_args(argv)
    gpu = json.loads(Path(args.gpu).read_text())
    if gpu.get("smoke"):
        parser.error(f"{args.gpu} holds gpu.py --smoke figures (tiny sizes): the cost model needs a GPU run")
    speed = throughputs(gpu)
    config = resolved_config(args.config)
    hours = method_hours(config, speed, args.train_images, args.val_images)
    real = real_images(config, args.train_images)
    shared = shared_hours(speed, args.pool_images, real, args.val_images)
    print(render(dry_run_jobs(args.config), hours, shared, gpu.get("device", "GPU")), end="")


if __name__ == "__main__":
    main()
