"""Calibration of a classifier: how far its confidence is from how often it is right.

``expected_calibration_error`` is the ECE of Guo et al. (2017, "On calibration of modern
neural networks"): the predictions are put in ``n_bins`` equal-width bins of confidence
(the top softmax probability), ``(0, 1/M], (1/M, 2/M], ..., ((M-1)/M, 1]``, and the ECE is
``sum over bins of |bin| / n * |accuracy(bin) - mean confidence(bin)|``. It is given in
percentage points, on the scale of top-1 (0 to 100): 0 for a classifier whose confidence
matches its accuracy in every bin, 30 for one that says 100% and is right 70% of the time.

Written here rather than taken from a library: torchmetrics' ``MulticlassCalibrationError``
computes the same, but the package is not a dependency of augbench and would be one only
for these few lines.
"""

from __future__ import annotations

import torch

N_BINS = 15  # Guo et al.'s choice, and the one most papers report


def expected_calibration_error(confidence: torch.Tensor, hits: torch.Tensor, n_bins: int = N_BINS) -> float:
    """ECE in percentage points of predictions with the given confidences (0 to 1) and hits (bool)."""
    confidence = torch.as_tensor(confidence, dtype=torch.float64).flatten()
    hits = torch.as_tensor(hits, dtype=torch.float64).flatten()
    if confidence.numel() == 0 or confidence.numel() != hits.numel():
        raise ValueError(f"{confidence.numel()} confidences and {hits.numel()} hits: need as many, and some")
    if confidence.min() < 0 or confidence.max() > 1:
        raise ValueError("confidences must lie between 0 and 1")
    # The inner edges; right=False puts a confidence equal to an edge in the bin below: bins are (low, high].
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)[1:-1]
    bins = torch.bucketize(confidence, edges, right=False)
    # |bin| / n * |accuracy(bin) - mean confidence(bin)| = |sum over the bin of (hit - confidence)| / n;
    # an empty bin adds 0.
    gap = torch.bincount(bins, weights=hits - confidence, minlength=n_bins)
    return float(100.0 * gap.abs().sum() / confidence.numel())
