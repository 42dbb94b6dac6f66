"""What every module's command line does before its work: log to stderr, cap torch's threads,
and build its options from the stage's settings dataclasses (one default per setting, in the dataclass)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import typing
from collections.abc import Callable
from dataclasses import MISSING, field, fields

FORMAT = "%(asctime)s %(levelname)s %(message)s"


def start_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=FORMAT)


def run(main: Callable[[], object]) -> typing.NoReturn:
    """Run a module's command line, then end the process at once, without Python's teardown.

    Native thread pools can abort a process while the interpreter tears them down at exit
    (std::terminate on a thread still running: Arrow's, which pandas 3 uses for its strings,
    apache/arrow #34314 and #39862). The job's work is done and written, yet it ends with
    SIGABRT and Snakemake deletes its outputs: seen once in the smoke run, a pool merge that
    logged its last line and exited with 134. Whatever a module writes is closed when its
    main returns; the logs and standard streams are flushed here. An exception ends the
    process as Python does (its traceback, status 1). The teardown also cost time: 1 s for a
    process that imported torch and torchvision, 1.5 to 2.5 s with diffusers' pipeline loaded.
    """
    try:
        status = main()
    except SystemExit as exit:
        status = exit.code
    # As sys.exit reads its argument: None is success, a number the status, anything else is
    # printed and fails.
    if status is None or isinstance(status, int):
        code = status or 0
    else:
        print(status, file=sys.stderr)
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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


def comma_separated(text: str) -> tuple[str, ...]:
    """A command-line list written as one comma-separated word (the empty word: none)."""
    return tuple(value.strip() for value in text.split(",") if value.strip())


def setting(default=MISSING, *, help: str, choices=None, config: str | None = None, parse=None):
    """A field of a stage's settings dataclass: its one default, its help, its allowed values, and
    ``config``, the config key it mirrors (``methods.*.steps``, ``diffusion.dtype``), whose schema
    default the unit tests hold it to. ``parse``, where given, reads the option's text in place of
    its annotation's type (``comma_separated`` for a list written as one word)."""
    metadata = {"help": help, "choices": choices, "config": config}
    if parse is not None:
        metadata["parse"] = parse
    return field(metadata=metadata) if default is MISSING else field(default=default, metadata=metadata)


def add_settings(parser: argparse.ArgumentParser, settings_class) -> None:
    """One ``--field-name`` option per field of a settings dataclass, typed from its annotation;
    a field without a default is a required option. The dataclass holds the defaults: an option
    left out is left out of the parsed namespace (see :func:`settings_from`)."""
    hints = typing.get_type_hints(settings_class)
    for item in fields(settings_class):
        kind = hints[item.name]
        # X | None is an optional X
        kind = next((part for part in typing.get_args(kind) if part is not type(None)), kind)
        options = {"help": item.metadata["help"], "default": argparse.SUPPRESS}
        if item.metadata.get("choices"):
            options["choices"] = item.metadata["choices"]
        if item.default is MISSING:
            options["required"] = True
        else:
            options["help"] += f" (default: {item.default})"
        if item.metadata.get("parse"):
            options["type"] = item.metadata["parse"]
        elif typing.get_origin(kind) is list:
            options |= {"action": "append", "type": typing.get_args(kind)[0]}
        else:
            options["type"] = parse_bool if kind is bool else kind
        parser.add_argument("--" + item.name.replace("_", "-"), **options)


def settings_from(args: argparse.Namespace, settings_class):
    """The settings dataclass from the options given on the command line, the rest at their defaults."""
    given = vars(args)
    return settings_class(**{item.name: given[item.name] for item in fields(settings_class) if item.name in given})
