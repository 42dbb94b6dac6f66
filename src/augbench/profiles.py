"""Install the shipped Snakemake profiles by name, so that ``snakemake --profile slurm`` works.

Snakemake looks a profile name up in the current directory, then in the user's and the site's
config folders, which it gets from platformdirs (on Linux ``$XDG_CONFIG_HOME/snakemake``, else
``~/.config/snakemake``, then ``/etc/xdg/snakemake``). ``install`` copies ``profiles/<folder>``
there under its name: ``local`` as ``augbench-local`` (a bare ``local`` is too generic a name to
claim in a user's profile folder), ``slurm`` and ``slurm-gcp`` as they are.

Copies rather than links: a SLURM profile is meant to be edited with the site's partitions and
account, and a copy is the user's to edit without touching the checkout (and it outlives the
clone). Re-installing leaves an identical copy alone and never overwrites an edited one unless
forced. The profiles name no repository paths, so a copy works wherever the workflow is run.

    python -m augbench.profiles install [--force]      # what `make profiles` runs
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import platformdirs

from augbench.cli import run

# The profiles folder of the checkout this package is installed from (editable, as the Makefile does).
SHIPPED = Path(__file__).resolve().parents[2] / "profiles"

# Folder under profiles/ -> the name it is installed under.
INSTALLED_NAMES = {"local": "augbench-local", "slurm": "slurm", "slurm-gcp": "slurm-gcp"}


class ProfileConflict(Exception):
    """Installed profiles of the same names differ from the shipped ones and were left as they are;
    ``outcomes`` says what happened to the others."""

    def __init__(self, messages: list[str], outcomes: dict[Path, str]):
        super().__init__("\n".join(messages))
        self.messages, self.outcomes = messages, outcomes


def user_profile_dir() -> Path:
    """The user's folder of named profiles, as Snakemake finds it (the same platformdirs call)."""
    return Path(platformdirs.user_config_dir("snakemake", "snakemake"))


def _files(folder: Path) -> list[Path]:
    return sorted(path.relative_to(folder) for path in folder.rglob("*") if not path.is_dir())


def same_profile(one: Path, other: Path) -> bool:
    """Whether two profile folders hold the same files with the same bytes."""
    if not (one.is_dir() and other.is_dir()):
        return False
    files = _files(one)
    if files != _files(other):
        return False
    return all(filecmp.cmp(one / name, other / name, shallow=False) for name in files)


def _replace_with_copy(shipped: Path, target: Path) -> None:
    # Copy beside the target first, so that a failed copy never leaves half a profile in its place.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        copy = staging / target.name
        shutil.copytree(shipped, copy)
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)
        copy.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install(source: Path = SHIPPED, destination: Path | None = None, force: bool = False) -> dict[Path, str]:
    """Copy each shipped profile to ``destination`` (the user's profile folder by default) under its
    installed name. Returns what happened to each: ``installed``, ``unchanged`` or ``replaced``.

    A profile already there with other content is left as it is, unless ``force``; the others are
    still installed, then ``ProfileConflict`` says which were left and how to proceed."""
    for folder in INSTALLED_NAMES:
        if not (source / folder / "config.yaml").is_file():
            raise FileNotFoundError(f"no shipped profile at {source / folder} (expected a config.yaml in it)")
    destination = destination or user_profile_dir()
    destination.mkdir(parents=True, exist_ok=True)
    outcomes: dict[Path, str] = {}
    conflicts: list[str] = []
    for folder, name in INSTALLED_NAMES.items():
        shipped, target = source / folder, destination / name
        exists = target.exists() or target.is_symlink()
        if exists and same_profile(shipped, target):
            outcomes[target] = "unchanged"
            continue
        if exists and not force:
            conflicts.append(
                f"{target} exists and differs from {shipped}: keep it (compare: diff -r {shipped} {target}), "
                "or replace it with --force (make profiles FORCE=1)"
            )
            continue
        _replace_with_copy(shipped, target)
        outcomes[target] = "replaced" if exists else "installed"
    if conflicts:
        raise ProfileConflict(conflicts, outcomes)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m augbench.profiles",
        description="Install the shipped Snakemake profiles by name (augbench-local, slurm, slurm-gcp).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    install_command = commands.add_parser("install", help="copy the shipped profiles to the user's profile folder")
    install_command.add_argument("--force", action="store_true", help="replace installed profiles that differ")
    install_command.add_argument("--source", type=Path, default=SHIPPED, help="the shipped profiles folder")
    args = parser.parse_args(argv)
    try:
        outcomes, conflicts = install(args.source, force=args.force), []
    except ProfileConflict as conflict:
        outcomes, conflicts = conflict.outcomes, conflict.messages
    for target, outcome in outcomes.items():
        print(f"{outcome:<9} {target}  (snakemake --profile {target.name})")
    for message in conflicts:
        print(f"error: {message}", file=sys.stderr)
    return 1 if conflicts else 0


if __name__ == "__main__":
    run(main)
