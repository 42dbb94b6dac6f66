"""What every module's command line does before its work: log to stderr, and cap torch's threads."""

from __future__ import annotations

import argparse
import logging

FORMAT = "%(asctime)s %(levelname)s %(message)s"


def start_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=FORMAT)


def use_threads(threads: int | None) -> None:
    """Cap torch's CPU threads at what the job was given (None leaves torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def parse_bool(text: str) -> bool:
    """A command-line true/false, as the rules write booleans."""
    if text.lower() in {"true", "1", "yes"}:
        return True
    if text.lower() in {"false", "0", "no"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
