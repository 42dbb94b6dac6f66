"""envs/venv.lock, the pinned packages `make` installs without resolving: it must meet what
pyproject.toml asks for, or a clone would install a venv the package does not accept."""

from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def pins(text: str) -> dict[str, str]:
    """name -> version of each ``name==version`` line; anything else but comments is refused."""
    pinned = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        if not (sep and name and version) or " " in line:
            raise ValueError(f"envs/venv.lock line {number}: {line!r} is no pin")
        key = canonicalize_name(name)
        if key in pinned:
            raise ValueError(f"envs/venv.lock pins {name} twice")
        pinned[key] = version
    return pinned


def unmet(requirements: list[str], pinned: dict[str, str]) -> list[str]:
    """The requirements (PEP 508 strings) that the pinned versions do not meet, markers honoured."""
    missing = []
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        version = pinned.get(canonicalize_name(requirement.name))
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            missing.append(f"{text} (locked: {version})")
    return missing


def test_the_lock_pins_what_pyproject_asks_for_and_the_local_torch():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    pinned = pins((ROOT / "envs" / "venv.lock").read_text())
    assert unmet(project["dependencies"] + project["optional-dependencies"]["dev"], pinned) == []
    # The versions whose wheels lie on this machine's disk; any other torch downloads gigabytes.
    assert pinned["torch"] == "2.14.1" and pinned["torchvision"] == "0.29.1"
    # The venv's own pip stays; setuptools is pinned as the editable install builds without isolation.
    assert "pip" not in pinned and "setuptools" in pinned
    assert unmet(pyproject["build-system"]["requires"], pinned) == []


def test_an_unmet_or_malformed_lock_is_named():
    assert unmet(["numpy>=2", "pandas>=2.1", "faiss-cpu>=1.8"], pins("numpy==1.26.4\nfaiss_cpu==1.9.0\n")) == [
        "numpy>=2 (locked: 1.26.4)",
        "pandas>=2.1 (locked: None)",
    ]
    with pytest.raises(ValueError, match="line 1: 'torch>=2' is no pin"):
        pins("torch>=2\n")
    with pytest.raises(ValueError, match="pins faiss-cpu twice"):
        pins("faiss_cpu==1.9.0\nfaiss-cpu==1.9.0\n")
