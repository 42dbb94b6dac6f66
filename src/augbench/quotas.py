"""How many images each class gets: its quota of added images, the candidates retrieval asks
for to fill it, and the best-ranked usable candidates that fill it.

The quota is the study's 1:1 by default (as many added images as the class has real ones)
or ``augment.per_class``. Retrieval from URLs asks for more candidates than the quota
(``candidate_quotas``), as downloads fail and screening drops copies; ``keep_best`` then
keeps each class's highest-scoring usable ones.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def class_quotas(subset: pd.DataFrame, n_classes: int, per_class: int | None = None) -> list[int]:
    """Added images per class: ``per_class`` for each, or by default as many as the class has real images (1:1)."""
    if per_class is not None:
        if per_class < 0:
            raise ValueError(f"augment.per_class must be at least 0, got {per_class}")
        return [per_class] * n_classes
    return np.bincount(subset.label.to_numpy(), minlength=n_classes).tolist()


def candidate_quotas(quotas: list[int], factor: float) -> list[int]:
    """Candidates to retrieve per class: ``factor`` times its quota, rounded up (a quota of 0 stays 0)."""
    if factor < 1:
        raise ValueError(f"download factor must be at least 1, got {factor}")
    # Rounded first, so that 10 * 1.1 (11.000000000000002) asks for 11, not 12.
    return [math.ceil(round(quota * factor, 6)) for quota in quotas]


SHORT_OF_DOWNLOADS = (
    "raise the method's download.factor (more candidates per class) or download.retries, or lower augment.per_class"
)


def keep_best(
    candidates: pd.DataFrame,
    usable: pd.Series,
    quotas: list[int],
    classes: list[str],
    what: str = "downloads",
    remedy: str = SHORT_OF_DOWNLOADS,
) -> pd.DataFrame:
    """Each class's ``quotas[c]`` best-ranked candidates among those ``usable`` (a boolean per row) marks.

    Rank is ``score``, highest first (ties keep the candidates' order). Raises ValueError
    naming every class with fewer usable candidates than its quota (too few ``what``; ``remedy``).
    """
    if len(candidates) and not candidates.label.between(0, len(quotas) - 1).all():
        raise ValueError(f"candidate labels must lie in 0..{len(quotas) - 1}, one per class")
    frame = candidates.assign(_ok=usable.to_numpy(dtype=bool), _order=range(len(candidates)))
    frame = frame.sort_values(["label", "score", "_order"], ascending=[True, False, True], kind="stable")
    arrived = frame[frame._ok]
    kept = arrived[arrived.groupby("label").cumcount() < arrived.label.map(dict(enumerate(quotas)))]
    have = kept.label.value_counts()
    asked = frame.label.value_counts()
    short = [
        f"{classes[label]!r} ({int(have.get(label, 0))} of {quota}, from {int(asked.get(label, 0))} candidates)"
        for label, quota in enumerate(quotas)
        if have.get(label, 0) < quota
    ]
    if short:
        raise ValueError(f"too few {what} for class(es) {', '.join(short)}: {remedy}")
    return kept.drop(columns=["_ok", "_order"]).reset_index(drop=True)
