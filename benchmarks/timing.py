"""Timing shared by the benchmarks: GPU work is waited for before the clock stops."""

from __future__ import annotations

import time

import torch


def seconds(call, device: torch.device) -> float:
    """Wall seconds of one call, with the GPU's queued work finished on both sides."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    call()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def best_seconds(calls: dict, device: torch.device, repeats: int) -> dict[str, float]:
    """Best of ``repeats`` seconds of each call after a warm-up; the calls interleaved, so
    that all see the same machine (this one is noisy)."""
    for call in calls.values():
        call()
    best = {name: float("inf") for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            best[name] = min(best[name], seconds(call, device))
    return best
