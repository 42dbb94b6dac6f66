"""Shared file helpers: atomic writes and the manifest format every stage exchanges.

A manifest is a CSV with one row per image: ``path`` (relative to the workflow's
working directory, or absolute) and ``label`` (index into the class list), plus
optional columns such as ``caption``, ``prompt`` or ``score``. Manifests that users
bring may also be Parquet; a pool's needs no ``label``. A ``path`` of the form
``shard.tar::member@offset+size`` names a member of a tar (``augbench.images``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A killed job therefore never leaves a file that looks complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file private; outputs get the usual permissions, as open() would give them.
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text())


def write_manifest(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    if "path" not in frame or "label" not in frame:
        raise ValueError(f"manifest {path} needs 'path' and 'label' columns")
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


TEXT_COLUMNS = ("path", "key", "caption", "prompt", "url")


def read_manifest(path: str | os.PathLike, labelled: bool = True) -> pd.DataFrame:
    """A CSV or Parquet manifest. Unlabelled (a pool), ``label`` may be missing and reads as -1."""
    if str(path).endswith(".parquet"):
        frame = pd.read_parquet(path)
        # As a CSV reads: a missing text is "" (a missing caption), not None.
        frame = frame.fillna({name: "" for name in frame.columns if not pd.api.types.is_numeric_dtype(frame[name])})
    else:
        # Columns of names stay text even where they look like numbers (a webdataset key "000123").
        frame = pd.read_csv(path, keep_default_na=False, dtype={name: str for name in TEXT_COLUMNS})
    if not labelled and "label" not in frame:
        frame["label"] = -1
    missing = {"path", "label"} - set(frame.columns)
    if missing:
        raise ValueError(f"manifest {path} lacks column(s) {sorted(missing)}; it has {frame.columns.tolist()[:10]}")
    frame["path"] = frame["path"].astype(str)
    frame["label"] = frame["label"].astype(int)
    return frame


def _class_lines(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(folder, name) per class. A line is ``<name>``, or ``<folder><TAB><name>`` where the
    dataset's folder is not the name (ImageNet's WordNet ids); the line number is the label."""
    pairs = []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        folder, _, name = line.partition("\t")
        pairs.append((folder.strip(), (name or folder).strip()))
    if not pairs:
        raise ValueError(f"class list {path} is empty")
    for column, values in (("class name", [n for _, n in pairs]), ("folder", [f for f, _ in pairs])):
        if len(set(values)) != len(values):
            repeated = sorted({value for value in values if values.count(value) > 1})
            raise ValueError(f"class list {path} repeats the {column}(s) {repeated[:5]}")
    return pairs


def read_classes(path: str | os.PathLike) -> list[str]:
    """The class names of a class list, in label order."""
    return [name for _, name in _class_lines(path)]


def read_class_folders(path: str | os.PathLike) -> list[str]:
    """The dataset folder of each class of a class list, in label order."""
    return [folder for folder, _ in _class_lines(path)]


def write_classes(path: str | os.PathLike, names: list[str]) -> None:
    write_text(path, "".join(f"{name}\n" for name in names))


def save_image(path: str | os.PathLike, image) -> None:
    """Save a PIL image atomically, in the format its suffix names."""
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format=_FORMATS.get(path.suffix.lower(), "PNG"))


_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def list_tree(root: str, folders: list[str]) -> pd.DataFrame:
    """Every image file under ``root/<folder>/`` (recursively), labelled by the folder's position."""
    root_path = Path(root)
    if not root_path.is_dir():
        raise ValueError(f"dataset folder {root} does not exist")
    missing = [folder for folder in folders if not (root_path / folder).is_dir()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"dataset folder {root} has no folder for class(es) {shown} of the class list")
    paths, labels = [], []
    for label, folder in enumerate(folders):
        found = sorted(
            os.path.join(directory, name)
            for directory, _, names in os.walk(root_path / folder)
            for name in names
            if name.lower().endswith(IMAGE_SUFFIXES)
        )
        if not found:
            raise ValueError(f"dataset folder {root_path / folder} (class {folder}) holds no images")
        paths += found
        labels += [label] * len(found)
    extra = sorted({entry.name for entry in root_path.iterdir() if entry.is_dir()} - set(folders))
    if extra:
        log.info("left out %d folder(s) the class list does not name, e.g. %s", len(extra), extra[0])
    return pd.DataFrame({"path": paths, "label": labels})
