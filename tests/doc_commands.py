"""Reading the commands and code of the docs for tests/test_docs.py: the pages' fenced blocks and
inline code, the commands a shell block runs (bash, with every command recorded instead of run),
and each lgcvd command's click command and parsed context. It runs nothing it reads."""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    p.relative_to(ROOT).as_posix()
    for p in [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "research/README.md",
    ]
    if p.exists()
]
SHELL = {"": "shell", "sh": "shell", "bash": "shell", "shell": "shell", "console": "shell"}
FENCE = re.compile(r"^```\s*([\w-]*)\s*$")
NEEDS = re.compile(r"<!--\s*needs:\s*(.+?)\s*-->")
INLINE = re.compile(r"`((?:[^`\n]|\n(?!\s*\n))+)`")  # not across a blank line
OURS = re.compile(r"(lgcvd-\w|python3? (-m |research/|tools/)|torchrun |nohup |make |pytest )")
VENV_BIN = re.compile(r"(?<![\w/$.-])\.[\w.-]+/bin/(?=[\w-])")  # .venv-serve/bin/python -> python
BASH = shutil.which("bash") or "/bin/bash"
# Each command is recorded as: its line in the block, then its argv, then "\n"; NUL-separated.
RECORDER = r"""
record() { printf '%s\0' "$@" >> "$LGCVD_DOCS_LOG"; printf '\n\0' >> "$LGCVD_DOCS_LOG"; }
command_not_found_handle() { record "${BASH_LINENO[0]}" "$@"; return 0; }
mkdir() { record "${BASH_LINENO[0]}" mkdir "$@"; command -p mkdir "$@"; }
cd() { record "${BASH_LINENO[0]}" cd "$@"; }
set -u
source "$1"
wait
"""
SCRIPTS = {
    ep.name: ep
    for ep in importlib.metadata.entry_points(group="console_scripts")
    if ep.name.startswith("lgcvd-")
}


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the block's first line of code
    lang: str  # "shell", "python", "inline" or another fence language (not code)
    code: str
    needs: str | None  # the reason of a <!-- needs: REASON --> marker before it


@dataclass(frozen=True)
class Command:
    where: str  # PAGE:LINE
    argv: tuple[str, ...]
    inline: bool
    needs: str | None

    def __str__(self) -> str:
        return f"{self.where}: {' '.join(self.argv)}"


def page_blocks(page: str) -> list[Block]:
    lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
    blocks, prose, i = [], [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            prose.append(lines[i])
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        needs = NEEDS.search(before)
        lang = SHELL.get(fence.group(1), fence.group(1))
        code = lines[i + 1 : end]
        if fence.group(1) == "console":  # a transcript: commands after "$ ", then output
            code = [line[2:] if line.startswith("$ ") else "" for line in code]
        blocks.append(Block(page, i + 2, lang, "\n".join(code), needs.group(1) if needs else None))
        prose += [""] * (end + 1 - i)  # keeps the line numbers of the prose
        i = end + 1
    text = "\n".join(prose)
    for span in INLINE.finditer(text):  # inline code may wrap, within a paragraph
        snippet = " ".join(span.group(1).split())
        if OURS.match(VENV_BIN.sub("", snippet)):
            line = text.count("\n", 0, span.start()) + 1
            blocks.append(Block(page, line, "inline", snippet, None))
    return sorted(blocks, key=lambda b: b.line)


BLOCKS = [block for page in PAGES for block in page_blocks(page)]
SHELL_BLOCKS = [b for b in BLOCKS if b.lang in ("shell", "inline")]


def record(block: Block, folder: Path) -> tuple[list[Command], str]:
    """The commands `block` runs, as bash expands them, and what bash said on stderr."""
    script, log = folder / "block.sh", folder / "commands.log"
    script.write_text(VENV_BIN.sub("", block.code) + "\n")
    log.write_bytes(b"")
    env = {"PATH": "/nonexistent", "HOME": str(folder), "LGCVD_DOCS_LOG": str(log)}
    done = subprocess.run(
        [BASH, "--noprofile", "--norc", "-c", RECORDER, "docs", str(script)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    fields, commands, current = log.read_bytes().decode().split("\0"), [], []
    for field in fields:
        if field == "\n":
            line, *argv = current
            where = f"{block.page}:{block.line + int(line) - 1}"
            commands.append(Command(where, tuple(argv), block.lang == "inline", block.needs))
            current = []
        elif field:
            current.append(field)
    return commands, done.stderr.replace(str(script), f"{block.page}:{block.line}+")


def all_commands(tmp: Path) -> list[Command]:
    commands = []
    for n, block in enumerate(SHELL_BLOCKS):
        (tmp / str(n)).mkdir()
        commands += record(block, tmp / str(n))[0]
    return commands


def unwrap(argv: tuple[str, ...]) -> tuple[str, ...]:
    """The command behind `nohup` and `torchrun [OPTIONS] -m MODULE`."""
    if argv[:1] == ("nohup",):
        return unwrap(argv[1:])
    if argv[:3] in (("python", "-m", "pytest"), ("python3", "-m", "pytest")):
        return argv[2:]
    if argv[:1] == ("torchrun",) and "-m" in argv:
        return ("python", *argv[argv.index("-m") :])
    return argv


def script_command(path: Path) -> click.Command:
    """The click command `main` of a script, imported as `python path` would (its folder first
    on sys.path, so that it finds its sibling modules), without running it."""
    name = f"lgcvd_docs_{path.parent.name}_{path.stem}"
    if name not in sys.modules:
        sys.path.insert(0, str(path.parent))
        try:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        finally:
            sys.path.remove(str(path.parent))
    main = getattr(sys.modules[name], "main", None)
    assert isinstance(main, click.Command), f"{path.name} has no click command `main`"
    return main


def resolve(argv: tuple[str, ...]) -> tuple[click.Command, str, list[str]] | None:
    """(click command, program name, arguments) of an lgcvd command; None for another program.
    Fails where the program is ours but does not exist."""
    argv = unwrap(argv)
    if argv[0] in SCRIPTS:
        return SCRIPTS[argv[0]].load(), argv[0], list(argv[1:])
    if argv[0] in ("python", "python3") and len(argv) > 1:
        if argv[1] == "-m":
            spec = importlib.util.find_spec(argv[2])
            assert spec is not None, f"no module {argv[2]}"
            if spec.submodule_search_locations is not None:  # a package: runs its __main__
                assert importlib.util.find_spec(f"{argv[2]}.__main__"), f"{argv[2]} has no __main__"
                assert len(argv) == 3, "arguments of `python -m PACKAGE` are not checked here"
                return None
            main = getattr(importlib.import_module(argv[2]), "main", None)
            assert isinstance(main, click.Command), f"{argv[2]} has no click command `main`"
            return main, argv[2], list(argv[3:])
        if argv[1].endswith(".py"):
            path = ROOT / argv[1]
            assert path.is_file(), f"{argv[1]} does not exist"
            return script_command(path), argv[1], list(argv[2:])
    return None


@contextlib.contextmanager
def relaxed(command: click.Command, complete: bool):
    """Files need not exist; with `complete` False, no option or argument is required."""
    saved = []

    def relax(cmd: click.Command) -> None:
        for param in cmd.params:
            if isinstance(param.type, click.Path) and param.type.exists:
                saved.append((param.type, "exists", True))
                param.type.exists = False
            if not complete and param.required:
                saved.append((param, "required", True))
                param.required = False
        for sub in getattr(cmd, "commands", {}).values():
            relax(sub)

    relax(command)
    try:
        yield
    finally:
        for obj, attr, value in reversed(saved):
            setattr(obj, attr, value)


def parse(command: click.Command, name: str, args: list[str], complete: bool) -> click.Context:
    """The context `args` parse to, down to the subcommand; raises click.UsageError (a bad
    parameter included) where the command line would fail before running."""
    args = [a for a in args if a != "..."]
    with relaxed(command, complete):
        ctx = context(command, name, args, None, complete)
        while isinstance(command, click.Group):
            rest = [
                *vars(ctx).get("_protected_args", vars(ctx).get("protected_args", [])),
                *ctx.args,
            ]
            if not rest:
                break
            name, command, args = command.resolve_command(ctx, rest)
            ctx = context(command, name, args, ctx, complete)
    return ctx


def context(command, name, args, parent, complete: bool) -> click.Context:
    try:
        return command.make_context(name, list(args), parent=parent)  # click consumes the list
    except click.BadOptionUsage as error:  # prose may name an option without its value
        if complete or not args or error.option_name != args[-1]:
            raise
        return command.make_context(name, args[:-1], parent=parent)
