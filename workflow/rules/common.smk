import os
import re
import shlex
from pathlib import Path

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

RESULTS = f"results/{config['experiment']}"
LOGS = f"logs/{config['experiment']}"
BENCHMARKS = f"benchmarks/runs/{config['experiment']}"
ENV = "../../envs/augbench.yaml"
MINIWORLD = config["miniworld"]
METHODS = config["methods"]
SEEDS = [int(seed) for seed in config["seeds"]]
if len(set(SEEDS)) != len(SEEDS):
    raise ValueError(f"config seeds: {config['seeds']} repeats a seed")


def methods_of(kind):
    return [name for name, params in METHODS.items() if params["kind"] == kind]


def alternation(names):
    """A wildcard regex matching exactly these names (and nothing if there are none)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


wildcard_constraints:
    method=alternation(METHODS),
    seed=r"\d+",


def check_config():
    """Checks that a JSON schema cannot express; each names the key at fault."""
    subset = config["subset"]
    if (subset["per_class"] is None) == (subset["fraction"] is None):
        raise ValueError(
            "config subset: set exactly one of subset.per_class and subset.fraction"
        )
    if MINIWORLD["enabled"]:
        root = Path(MINIWORLD["root"])
        paths = {
            "dataset.classes": config["dataset"]["classes"],
            "dataset.train": config["dataset"]["train"],
            "dataset.val": config["dataset"]["val"],
            "pool.manifest": config["pool"]["manifest"],
        }
        for key, path in paths.items():
            if not Path(path).is_relative_to(root):
                raise ValueError(
                    f"config {key}: {path} is not under miniworld.root {root}; "
                    "with miniworld.enabled the data comes from the mini-world rules"
                )


def local_model(reference):
    """The folder or file a model reference names, if it is local; None for a hub id.

    A local model is an input of the jobs that use it, so the mini-world's
    pre-training rules run first; a hub id is fetched by the job itself.
    """
    if reference is None:
        return None
    path = reference.removeprefix("local-dir:")
    if (
        reference.startswith("local-dir:")
        or os.path.isabs(path)
        or path.startswith(".")
    ):
        return path
    if MINIWORLD["enabled"] and Path(path).is_relative_to(MINIWORLD["root"]):
        return path
    return path if Path(path).exists() else None


check_config()


def check_models():
    """A model folder the config names must exist unless the workflow trains it."""
    if not MINIWORLD["enabled"] or MINIWORLD["pretrain"]:
        return
    for key in ("clip", "diffusion"):
        path = local_model(config[key]["model"])
        if path and not Path(path).exists():
            raise ValueError(
                f"config {key}.model: {path} does not exist; set miniworld.pretrain: true "
                "to train it with the mini-world's rules"
            )


check_models()


def clip_inputs(wildcards=None):
    references = (config["clip"]["model"], config["clip"]["pretrained"])
    return [path for path in map(local_model, references) if path]


def diffusion_inputs(wildcards=None):
    path = local_model(config["diffusion"]["model"])
    return [path] if path else []


def adds_images(method):
    """Whether a method trains on more than the subset (every method but the baseline)."""
    params = METHODS[method]
    return params["kind"] != "real" or params["real_multiplier"] > 1


def added_images(wildcards):
    """The added-image manifest of a method, if it adds any."""
    if not adds_images(wildcards.method):
        return []
    return [f"{RESULTS}/added/{wildcards.method}/manifest.csv"]


def cli_options(options):
    """Command-line options of a module from a mapping; unset (None) values are left out.

    A list value repeats its flag (--manifest a --manifest b).
    """
    words = []
    for key, value in options.items():
        if value is None:
            continue
        flag = f"--{key.replace('_', '-')}"
        for item in value if isinstance(value, (list, tuple)) else [value]:
            text = str(item).lower() if isinstance(item, bool) else str(item)
            words += [flag, shlex.quote(text)]
    return " ".join(words)


def print_summary():
    summary = Path(f"{RESULTS}/summary.md")
    if summary.exists():
        print(f"\nResults of experiment {config['experiment']!r} ({summary}):\n")
        print(summary.read_text())
