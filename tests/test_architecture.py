"""The package's layering: stages depend on library modules only, and the study not on the mini-world.

A stage is a module a rule runs (``python -m augbench.<stage>``, found in the rule files).
If one stage imported another, a change to one stage's command line or outputs could
break a second stage that no rule connects to it; what stages share lives in library
modules, which no rule runs. The mini-world (``augbench.miniworld``) stands in for the
study's data and models; it may use the study's library, but a run on real data must
not depend on it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "augbench"
RULE_FILES = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
# python, {params.python} or a launcher such as torchrun: whatever runs it, "-m augbench.<stage>".
RUN_MODULE = re.compile(r"-m\s+(augbench(?:\.\w+)+)")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def stages() -> set[str]:
    return {name for path in RULE_FILES for name in RUN_MODULE.findall(path.read_text())}


def imports(source: str, package: str) -> set[str]:
    """The modules a module's source imports anywhere, functions included, with the packages
    each import runs (importing ``a.b.c`` runs ``a`` and ``a.b`` first); ``package`` is the
    module's own package, for relative imports. Of ``from a import b``, both ``a`` and ``a.b``
    count, as ``b`` may be a module."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x, from ..a import b
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {".".join(name.split(".")[:end]) for name in found for end in range(1, name.count(".") + 2)}


def imported_modules(name: str) -> set[str]:
    """The augbench modules the module ``name`` imports."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return (imports(path.read_text(), package) & set(MODULES)) - {name}


def test_the_rules_run_stages_that_exist():
    found = stages()
    # The rules run about twenty stages, the mini-world's among them; a broken pattern finds none.
    assert len(found) >= 15, found
    assert {"augbench.train", "augbench.sharded_retrieval", "augbench.miniworld.data"} <= found
    assert not found - set(MODULES), f"rules run modules that do not exist: {sorted(found - set(MODULES))}"


@pytest.mark.parametrize("stage", sorted(stages()))
def test_a_stage_imports_no_other_stage(stage):
    others = imported_modules(stage) & (stages() - {stage})
    assert not others, f"{stage} imports the stage(s) {sorted(others)}: move what they share into a library module"


@pytest.mark.parametrize("module", sorted(set(MODULES) - stages()))
def test_a_library_module_imports_no_stage(module):
    """Otherwise a stage could still reach another one through a library module."""
    reached = imported_modules(module) & stages()
    assert not reached, f"library module {module} imports the stage(s) {sorted(reached)}"


@pytest.mark.parametrize("module", sorted(name for name in MODULES if not name.startswith("augbench.miniworld")))
def test_the_study_does_not_import_the_miniworld(module):
    reached = {name for name in imported_modules(module) if name.startswith("augbench.miniworld")}
    assert not reached, f"{module} imports the mini-world's {sorted(reached)}"


def test_imports_are_found_inside_functions_relative_and_from_imports():
    source = """
from augbench import cost
from augbench.files import read_manifest
from . import data
from ..models import load_clip

def embed():
    import augbench.clip_embeddings
"""
    assert imports(source, "augbench.miniworld") == {
        "augbench",
        "augbench.cost",
        "augbench.files",
        "augbench.files.read_manifest",
        "augbench.miniworld",
        "augbench.miniworld.data",
        "augbench.models",
        "augbench.models.load_clip",
        "augbench.clip_embeddings",
    }
