"""Stand in for a config's data, so its DAG can be inspected before the data is in place.

    python -m augbench.stub configs/imagenet10.yaml [--root .]

A dry run (``snakemake -n``) and ``--rulegraph`` only need the dataset and pool paths a
config names to exist: this makes each missing one under ``--root`` (the working
directory), an empty folder for a class-per-folder tree or a clip-retrieval folder, and
an empty file for a manifest or a pool shard. Paths that exist are left alone, so real
data is never touched.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import yaml


def data_paths(config: dict) -> list[str]:
    dataset, pool = config.get("dataset", {}), config.get("pool", {})
    paths = (dataset.get("train"), dataset.get("val"), pool.get("manifest"), pool.get("embeddings"))
    return [path for path in paths if path]


def make_stub(config_path: str, root: str = ".") -> list[Path]:
    """Create what is missing; return what was created."""
    made = []
    for path in data_paths(yaml.safe_load(Path(config_path).read_text())):
        # A glob of pool shards ("pool/*.tar") stands in as one empty file it matches.
        target = Path(root) / path.replace("*", "stub").replace("?", "0")
        if target.exists() or glob.glob(str(Path(root) / path)):
            continue
        if target.suffix in (".csv", ".parquet", ".tar"):
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
