"""Stand in for a config's data, so its DAG can be inspected before the data is in place.

    python -m augbench.stub configs/imagenet10.yaml [--root .]

A dry run (``snakemake -n``) and ``--rulegraph`` only need the dataset and pool paths a
config names to exist: this makes each missing one under ``--root`` (the working
directory), an empty folder for a class-per-folder tree and an empty file for a
manifest. Paths that exist are left alone, so real data is never touched.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml


def data_paths(config: dict) -> list[str]:
    dataset, pool = config.get("dataset", {}), config.get("pool", {})
    return [path for path in (dataset.get("train"), dataset.get("val"), pool.get("manifest")) if path]


def make_stub(config_path: str, root: str = ".") -> list[Path]:
    """Create what is missing; return what was created."""
    made = []
    for path in data_paths(yaml.safe_load(Path(config_path).read_text())):
        target = Path(root) / path
        if target.exists():
            continue
        if target.suffix == ".csv":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        else:
            target.mkdir(parents=True)
        made.append(target)
    return made


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="the config (preset) whose data paths to stand in for")
    parser.add_argument("--root", default=".", help="the working directory the paths are relative to")
    args = parser.parse_args(argv)
    for path in make_stub(args.config, args.root):
        print(f"made {path}")


if __name__ == "__main__":
    main()
