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
SEEDS = config["seeds"]


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
        root = MINIWORLD["root"].rstrip("/") + "/"
        paths = {
            "dataset.classes": config["dataset"]["classes"],
            "dataset.train": config["dataset"]["train"],
            "dataset.val": config["dataset"]["val"],
            "pool.manifest": config["pool"]["manifest"],
        }
        for key, path in paths.items():
            if not path.startswith(root):
                raise ValueError(
                    f"config {key}: {path} is not under miniworld.root {root}; "
                    "with miniworld.enabled the data comes from the mini-world rules"
                )


check_config()


def local_model(reference):
    """The folder or file a model reference names, if it is local; None for a hub id.

    A local model is an input of the jobs that use it, so the mini-world's
    pre-training rules run first; a hub id is fetched by the job itself.
    """
    if reference is None:
        return None
    path = reference.removeprefix("local-dir:")
    if reference.startswith("local-dir:") or path.startswith(("/", ".")):
        return path
    if MINIWORLD["enabled"] and path.startswith(MINIWORLD["root"].rstrip("/") + "/"):
        return path
    return path if Path(path).exists() else None


def clip_inputs(wildcards=None):
    return [
        p
        for p in (local_model(config["clip"]["model"]), local_model(config["clip"]["pretrained"]))
        if p
    ]


def diffusion_inputs(wildcards=None):
    path = local_model(config["diffusion"]["model"])
    return [path] if path else []


def optional(flag, value):
    """A command-line option, or nothing when the value is unset."""
    return "" if value is None else f"{flag} {shlex.quote(str(value))}"


def print_summary():
    summary = Path(f"{RESULTS}/summary.md")
    if summary.exists():
        print(f"\nResults of experiment {config['experiment']!r} ({summary}):\n")
        print(summary.read_text())
