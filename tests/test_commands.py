"""Every command a rule runs parses with its module's own options.

A dry run prints each job's shell command; an option a rule passes and its module does
not define would otherwise surface only when the job runs, hours into a cluster run.
"""

from __future__ import annotations

import argparse
import importlib
import shlex

import pytest
from test_presets import PLANS


class Parsed(Exception):
    """Raised in place of running a module, once its command line has parsed."""


def module_commands(output: str) -> list[tuple[str, list[str]]]:
    """(module, arguments) of the ``python -m augbench.<module>`` commands in a dry run's shell
    commands, one of each set of options (a preset's shards differ only in values). A command
    run through ``augbench.usage`` gives both: the wrapper's and the module's it runs."""
    commands = {}
    for line in output.splitlines():
        if "-m augbench." not in line:
            continue
        words = shlex.split(line.removeprefix("Shell command:").strip())
        while "-m" in words:
            start = words.index("-m")
            module = words[start + 1]
            end = words.index("--", start) if module == "augbench.usage" else len(words)
            end = min(end, words.index(">") if ">" in words else len(words))
            arguments = words[start + 2 : end]
            options = tuple(word for word in arguments if word.startswith("--"))
            commands.setdefault((module, arguments[0], options), (module, arguments))
            words = words[end + 1 :] if module == "augbench.usage" else []
    return list(commands.values())


@pytest.mark.parametrize("plan", PLANS)
def test_every_rule_command_parses_with_its_module_options(plan, planned, monkeypatch):
    commands = module_commands(planned(plan))
    assert len(commands) > 15

    parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise Parsed(parse(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    modules = set()
    for module, arguments in commands:
        try:
            importlib.import_module(module).main(arguments)
        except SystemExit as error:  # argparse's way to refuse a command line
            pytest.fail(f"{module} refused the command its rule writes ({error}): {shlex.join(arguments)}")
        except Parsed:
            modules.add(module)
            continue
        pytest.fail(f"{module}.main never parsed its command line")
    assert {"augbench.usage", "augbench.train", "augbench.evaluate"} <= modules
    if plan == "service":
        assert {"augbench.knn_service", "augbench.download", "augbench.screen_downloads"} <= modules
