"""Stand in for a config's data, so its DAG can be inspected before the data is in place.

    python -m augbench.stub configs/imagenet10.yaml [--root .]

A dry run (``snakemake -n``) and ``--rulegraph`` only need the dataset, evaluation-set and pool paths a
config names to exist: this makes each missing one under ``--root`` (the working
directory), an empty folder for a class-per-folder tree or a clip-retrieval folder, and
an empty file for a manifest, a pool shard, a subset's file list, the classifier's
starting weights or a method's threshold file. Paths that exist are left alone, so real
data is never touched.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import yaml

from augbench.cli import run


def data_paths(config: dict) -> list[tuple[str, bool]]:
    """(path, whether it is a file) of every data path the config names."""
    dataset, pool = config.get("dataset", {}), config.get("pool", {})
    # A tree or a clip-retrieval folder is a folder unless it is named as a manifest or shard.
    splits = [dataset.get("train"), dataset.get("val")]
    # A torchvision dataset stands in as its root folder (the listing job, not the dry run, reads it).
    splits = [split["torchvision"]["root"] if isinstance(split, dict) else split for split in splits]
    data = (*splits, pool.get("manifest"), pool.get("embeddings"))
    data += tuple((entry or {}).get("images") for entry in (config.get("evaluation_sets") or {}).values())
    paths = [(path, Path(path).suffix in (".csv", ".parquet", ".tar")) for path in data if path]
    # Files a config may name beside the data: a subset's file list, the classifier's
    # starting weights, a method's per-class CLIP-score thresholds.
    files = [config.get("subset", {}).get("file_list"), config.get("classifier", {}).get("init_weights")]
    files += [(method or {}).get("min_clip_score_file") for method in (config.get("methods") or {}).values()]
    return paths + [(path, True) for path in files if path]


def make_stub(config_path: str, root: str = ".") -> list[Path]:
    """Create what is missing; return what was created."""
    made = []
    for path, is_file in data_paths(yaml.safe_load(Path(config_path).read_text())):
        # A glob of pool shards ("pool/*.tar") stands in as one empty file it matches.
        target = Path(root) / path.replace("*", "stub").replace("?", "0")
        if target.exists() or glob.glob(str(Path(root) / path)):
            continue
        if is_file:
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
    run(main)
