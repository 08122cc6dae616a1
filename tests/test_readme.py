"""The README's first lines stay true: CI runs its test command, its main job exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text, re.DOTALL)
    assert block, "README.md must open with a bash block of two commands"
    assert text.index(block.group(0)) < 200, "the commands must come first in README.md"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_two_commands() -> None:
    assert len(_readme_commands()) == 2


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test_command = _readme_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in ci


def test_readme_main_job_is_a_real_subcommand() -> None:
    import click

    from cxr_pneumonia.cli import cli

    main_job = _readme_commands()[0].split("&&")[-1].strip()
    argv = shlex.split(main_job)
    assert argv[0] == "cxr-pneumonia"
    command = cli.commands.get(argv[1])
    assert command is not None, f"README main job {main_job!r}: no command {argv[1]!r}"
    try:
        command.make_context(argv[1], argv[2:])  # parses and checks every option, runs nothing
    except click.UsageError as exc:  # pragma: no cover - the failure message is the point
        pytest.fail(f"README main job {main_job!r} does not parse: {exc.format_message()}")
