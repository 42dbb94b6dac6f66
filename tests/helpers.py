"""Running the workflow the way users do: the real ``snakemake`` command on the smoke config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"
SHIPPED_MODELS = Path("resources") / "miniworld" / "models"


def with_shipped_models(workdir: Path) -> Path:
    """``workdir``, where the mini-world's shipped models (which the smoke config reads, as the demo
    does) are found at the path they have in the repository: a link to them."""
    link = Path(workdir) / SHIPPED_MODELS
    if Path(workdir).resolve() != REPO and not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(REPO / SHIPPED_MODELS, target_is_directory=True)
    return Path(workdir)


def snakemake_command(
    workdir: Path, *args: str, profile: Path | None = REPO / "profiles" / "local", configfile: Path = SMOKE
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a workflow run in ``workdir`` (which gets the shipped models)."""
    with_shipped_models(workdir)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    command += ["--directory", str(workdir), "--configfile", str(configfile)]
    command += ["--profile", str(profile)] if profile else []
    return command + list(args), env


def snakemake(
    workdir: Path,
    *args: str,
    profile: Path | None = REPO / "profiles" / "local",
    configfile: Path = SMOKE,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """Run the workflow in ``workdir`` on the smoke config with a profile (a workstation's by default);
    past ``timeout`` seconds it is stopped and the test fails rather than hanging."""
    command, run_env = snakemake_command(workdir, *args, profile=profile, configfile=configfile)
    result = subprocess.run(command, env={**run_env, **(env or {})}, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def as_a_new_job() -> None:
    """Forget the accelerate state of personalisations run earlier in this test process: accelerate
    keeps one per process (a job is one), and refuses another precision or device in the same one.
    accelerate's own tests clear it the same way between tests (AccelerateTestCase)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def checkpoint_epoch(folder: Path) -> int:
    """The epochs a training checkpoint folder holds (0 while there is none or it is half written)."""
    import torch

    try:
        return int(torch.load(folder / "state.pt", weights_only=True)["epoch"])
    except (FileNotFoundError, RuntimeError, EOFError, KeyError):
        return 0
