"""Running the workflow the way users do: the real ``snakemake`` command on the smoke config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"


def snakemake(
    workdir: Path, *args: str, profile: Path = REPO / "profiles" / "local", check: bool = True
) -> subprocess.CompletedProcess:
    """Run the workflow in ``workdir`` on the smoke config with a profile (a workstation's by default)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    command += ["--directory", str(workdir), "--configfile", str(SMOKE), "--profile", str(profile), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result
