"""Every `flip ...` command in a fenced block of README.md or docs/*.md exists as written.

Each command's subcommand path must resolve in the `flip` app and print its `--help`; its
options and arguments are then parsed by click without running the command (placeholders such
as `<features dir>` become a dummy value; a command that elides the rest with `...` may leave
required options out). Fenced `make X` lines must name a Makefile target, and
`python benchmarks/X.py --opt ...` lines a script whose `--help` lists each option.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from flows.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^[ \t]*```(\w*)[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
_SHELL = {"", "bash", "sh", "shell", "console"}
_MENTION = re.compile(r"(^|[\s/])(flip|make)\s")
_PLACEHOLDER = re.compile(r"<[^<>\n]+>")
_CONTROL = re.compile(r"\s(?:&&|\|\||\||;)\s|;\s*$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_PROGRAMS = ("flip", "make", "benchmark")  # benchmark: `python benchmarks/<script>.py`


@dataclass(frozen=True)
class DocCommand:
    """One documented command: where it is and its words after the program name."""

    where: str
    program: str
    args: tuple[str, ...]
    elided: bool  # the doc wrote `...` for the rest


def _logical_lines(block: str) -> list[tuple[int, str]]:
    """The block's lines with backslash continuations joined, with their first line's offset."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for i, line in enumerate(block.splitlines()):
        if not pending:
            start = i
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def _words(segment: str) -> list[str]:
    words = shlex.split(_PLACEHOLDER.sub("PLACEHOLDER", segment), comments=True)
    while words and _ENV.match(words[0]):
        words.pop(0)  # VAR=value before the program
    return [w.removeprefix("[").removesuffix("]") for w in words]  # [--optional part]


def commands_in(text: str, name: str) -> list[DocCommand]:
    """The `flip`, `make` and benchmark commands of the fenced blocks in `text`."""
    found: list[DocCommand] = []
    for block in _FENCE.finditer(text):
        if block.group(1) not in _SHELL:
            continue
        first_line = text.count("\n", 0, block.start(2)) + 1
        for offset, line in _logical_lines(block.group(2)):
            for segment in _CONTROL.split(line):
                try:
                    words = _words(segment)
                except ValueError as exc:  # unbalanced quotes: not a command a shell runs
                    if _MENTION.search(segment):
                        where = f"{name}:{first_line + offset}"
                        found.append(DocCommand(where, str(exc), (), elided=False))
                    continue
                if not words:
                    continue
                program = Path(words[0]).name
                if program.startswith("python") and words[1:2] and "benchmarks/" in words[1]:
                    program = "benchmark"
                if program in _PROGRAMS:
                    rest = [w for w in words[1:] if w != "..."]
                    found.append(
                        DocCommand(
                            f"{name}:{first_line + offset}",
                            program,
                            tuple(rest),
                            elided=len(rest) < len(words) - 1,
                        )
                    )
    return found


def check_command(command: DocCommand) -> None:
    """Raise AssertionError unless the command's subcommand and options exist as written."""
    assert command.program in _PROGRAMS, f"{command.where}: {command.program}"
    if command.program == "benchmark":
        script, *rest = command.args
        shown = f"python {script}"
        assert (ROOT / script).is_file(), f"{command.where}: no {script}"
        listed = set(re.findall(r"--[\w-]+", _script_help(script)))
        for word in rest:
            option = word.split("=", 1)[0]
            if option.startswith("--"):
                assert option in listed, f"{command.where}: `{shown}` has no {option}"
        return
    if command.program == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE)
        for target in command.args:
            if "=" not in target:
                assert target in targets, f"{command.where}: no make target {target!r}"
        return
    args = list(command.args)
    # click's classes, duck-typed: typer >= 0.22 ships its own copy of click
    paths: list[tuple[list[str], Any]] = [([], get_command(app))]
    while args and hasattr(paths[0][1], "commands"):
        alternatives = args.pop(0).split("|")  # `pretrain|finetune`: check each
        group_path, group = paths[0]
        paths = []
        for name in alternatives:
            sub = group.commands.get(name)
            assert sub is not None, f"{command.where}: no `flip {' '.join([*group_path, name])}`"
            paths.append(([*group_path, name], sub))
    for path, cmd in paths:
        shown = " ".join(["flip", *path])
        assert not hasattr(cmd, "commands"), f"{command.where}: `{shown}` needs a subcommand"
        result = CliRunner().invoke(app, [*path, "--help"])
        assert result.exit_code == 0, f"{command.where}: `{shown} --help` failed: {result.output}"
        try:
            cmd.make_context(shown, list(args))  # parses and converts; runs nothing
        except Exception as exc:
            kinds = {kind.__name__ for kind in type(exc).__mro__}
            if "MissingParameter" in kinds and command.elided:
                continue  # `flip train ... --resume`: the doc left the rest out on purpose
            if "UsageError" not in kinds:
                raise
            raise AssertionError(f"{command.where}: `{shown} {' '.join(args)}`: {exc}") from None


@functools.cache
def _script_help(script: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, script, "--help"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, f"`python {script} --help` failed: {done.stderr[-2000:]}"
    return done.stdout


def _documented() -> list[DocCommand]:
    found: list[DocCommand] = []
    for path in DOCS:
        found += commands_in(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())
    return found


DOCUMENTED = _documented()


def test_the_docs_document_commands() -> None:
    flips = [c for c in DOCUMENTED if c.program == "flip"]
    assert len(flips) >= 10
    readme = {c.args for c in DOCUMENTED if c.where.startswith("README.md:")}
    assert ("demo",) in readme and ("test",) in readme


@pytest.mark.parametrize("command", DOCUMENTED, ids=lambda c: f"{c.where} {c.program}")
def test_a_documented_command_exists_as_written(command: DocCommand) -> None:
    check_command(command)


@pytest.mark.parametrize(
    "text",
    [
        "flip nosuch --help",
        "flip train --model dcnv2 --features <dir> --out x --no-such-option 1",
        "flip data",
        "flip score --input a.parquet",  # --output is required and nothing is elided
        "make no-such-target",
        "python benchmarks/score.py --no-such-option 1",
        "python benchmarks/no_such_script.py",
        "flip score --input 'a.parquet --output b.parquet",
    ],
)
def test_the_check_fails_for_a_wrong_command(text: str) -> None:
    (command,) = commands_in(f"```bash\n{text}\n```\n", "example.md")
    with pytest.raises(AssertionError):
        check_command(command)


def test_continuations_placeholders_and_elisions_are_read() -> None:
    text = (
        "```bash\n"
        "X=1 .venv/bin/flip train --model dcnv2 --features <features dir> \\\n"
        "    --out runs/a   # a comment\n"
        "flip train ... --resume && make demo\n"
        "```\n"
    )
    first, second, third = commands_in(text, "example.md")
    assert " ".join(first.args) == "train --model dcnv2 --features PLACEHOLDER --out runs/a"
    assert [c.where for c in (first, second, third)] == [f"example.md:{n}" for n in (2, 4, 4)]
    assert second.elided and not first.elided and third.args == ("demo",)
    for command in (first, second, third):
        check_command(command)
