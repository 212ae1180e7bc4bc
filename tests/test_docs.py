"""README.md, docs/*.md and research/README.md, tested: every command and code block in them
runs or is checked. A failure names the page and line.

- A shell block (a fence with no language, or sh / bash / shell / console) runs in bash with a
  PATH that finds nothing, so each command is recorded instead of executed: variables, loops and
  line continuations expand as in a reader's shell, and a syntax error or an unset variable
  fails. Inline code in prose and tables that starts with one of this repository's commands is
  recorded the same way. ```text blocks are not code; an indented code block must be fenced.
- A recorded lgcvd command (a console script of the installed package, `python -m MODULE`,
  `python research/NAME.py` or `python tools/NAME.py`, also behind `nohup` or `torchrun`) is
  parsed by its own click command: an unknown command or option, a bad choice or number fails,
  and so does a missing required option or argument, except in inline code or where `...`
  elides part of the command. Files need not exist. `make TARGET` must name a Makefile target
  and `pytest` existing test files.
- `lgcvd-run info` and the `lgcvd-run` commands that take `--steps` also run, in a folder that
  holds the files they name (`FIXTURES`), as smoke runs: `--steps 2` where none or more than 10
  are asked, `--repeats 1` for bench, `--threads 1`; one run for each command and set of options
  given. Those that need a server, a GPU backend or files that are not here are only parsed, as
  are the long ones (training for hours).
- Any other program (pip, docker, ...) may appear only in a block preceded by the marker
  `<!-- needs: REASON -->`, REASON saying what running it takes; there, a `python SCRIPT.py` may
  name a script that is gone, of the commit REASON names.
- Python blocks compile and import only what exists; a page's unmarked blocks run in order in
  one namespace, given `stand_ins` for the names they leave to the reader, `load` smoke settings.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import time
from pathlib import Path

import av
import click
import numpy as np
import pytest
from click.testing import CliRunner
from doc_commands import (
    BLOCKS,
    PAGES,
    ROOT,
    SHELL_BLOCKS,
    Block,
    Command,
    all_commands,
    parse,
    record,
    resolve,
    unwrap,
)

from lgcvd_runtime.cli.bench import parse_compare

DEMO = ROOT / "lgcvd_runtime" / "assets"
FIXTURES = {  # file named by the docs -> what stands in for it here
    "input.mp4": "72 frames of the shipped demo clip, H.264",
    "input.mkv": "the same, FFV1",
    "model.lgcvd": "the shipped model",
    "pushsim.lgcvd": "the shipped model",
}
SMOKE = {"steps": 2, "threads": 1}  # what load() is given in the Python blocks
QUICK = ("predict", "interpolate", "generate", "bench", "info")  # lgcvd-run commands run here


def check(cmd: Command) -> click.Context | None:
    """Fails unless `cmd` is an lgcvd command that parses, or another program this file checks
    (make, pytest) or that its block's marker excuses. Returns the parsed context, if any."""
    argv = unwrap(cmd.argv)
    complete = not cmd.inline and "..." not in argv
    try:
        resolved = resolve(argv)
    except AssertionError as error:
        if cmd.needs:  # e.g. a script of an earlier commit, which the marker names
            return None
        pytest.fail(f"{cmd}\n  {error}", pytrace=False)
    if resolved is not None:
        command, name, args = resolved
        if cmd.inline and not args:
            return None  # the program named in prose
        try:
            return parse(command, name, args, complete)
        except click.exceptions.Exit as stop:  # --help, --version
            assert stop.exit_code == 0
            return None
        except click.UsageError as error:
            pytest.fail(f"{cmd}\n  {error.format_message()}", pytrace=False)
    if argv[0] == "make":
        targets = re.findall(r"^([\w.-]+):", (ROOT / "Makefile").read_text(), re.M)
        missing = [t for t in argv[1:] if not t.startswith("-") and t not in targets]
        assert not missing, f"{cmd}\n  the Makefile has no target {missing}"
    elif argv[0] == "pytest":
        paths = [a.split("::")[0] for a in argv[1:] if "/" in a or a.endswith(".py")]
        assert all((ROOT / p).exists() for p in paths), f"{cmd}\n  no such test file"
    elif argv[:2] != ("python", "-m") and argv[0] not in ("mkdir", "cd"):
        assert cmd.needs, (
            f"{cmd}\n  is not an lgcvd command; run it here, or mark its block with "
            "<!-- needs: REASON -->"
        )
    return None


@pytest.fixture(scope="module")
def commands(tmp_path_factory) -> list[Command]:
    return all_commands(tmp_path_factory.mktemp("shell"))


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fixtures")
    frames = demo_frames()
    frames = np.concatenate([frames, frames[::-1], frames, frames[::-1]])[:72]
    for name, codec, pix in (("input.mp4", "libx264", "yuv420p"), ("input.mkv", "ffv1", "bgr0")):
        with av.open(str(folder / name), "w") as out:
            stream = out.add_stream(codec, rate=10)
            stream.width, stream.height, stream.pix_fmt = 64, 64, pix
            for frame in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            out.mux(stream.encode())
    for name in ("model.lgcvd", "pushsim.lgcvd"):
        (folder / name).symlink_to(DEMO / "default.lgcvd", target_is_directory=True)
    return folder


def demo_frames() -> np.ndarray:
    with av.open(str(DEMO / "demo.mkv")) as video:
        return np.stack([f.to_ndarray(format="rgb24") for f in video.decode(video=0)])


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda b: f"{b.page}:{b.line}")
def test_every_shell_block_expands_in_bash_without_an_error(block, tmp_path):
    commands, errors = record(block, tmp_path)
    assert not errors, f"{block.page}:{block.line}: bash says:\n{errors}"
    assert commands or block.code.lstrip().startswith("#"), f"{block.page}:{block.line}: no command"


@pytest.mark.parametrize("page", PAGES)
def test_code_is_fenced_where_this_file_finds_it(page):
    lines, fenced, indented = (ROOT / page).read_text(encoding="utf-8").splitlines(), False, []
    for n, line in enumerate(lines):
        fenced ^= line.startswith("```")
        after_blank = n == 0 or not lines[n - 1].strip()
        if not fenced and after_blank and line.startswith("    ") and line.strip():
            indented.append(f"{page}:{n + 1}: {line.strip()}")
    assert not indented, "an indented code block; fence it, with its language:\n" + "\n".join(
        indented
    )


def test_every_documented_command_parses_with_its_own_options(commands):
    failures = []
    for cmd in commands:
        try:
            check(cmd)
        except (AssertionError, pytest.fail.Exception) as failure:
            failures.append(str(failure).split("\nassert")[0])
    assert not failures, "\n".join(failures)


def quick(cmd: Command, ctx: click.Context | None, folder: Path) -> str | list[str]:
    """The arguments of a smoke run of `cmd`, or why it is not run here."""
    if ctx is None or cmd.argv[0] != "lgcvd-run" or ctx.info_name not in QUICK:
        return "not one of the quick lgcvd-run commands"
    params = ctx.params
    if params.get("server"):
        return "needs a Triton server"
    if params.get("backend") not in (None, "auto", "onnxruntime"):
        return "needs a GPU"
    if cmd.inline:
        try:
            parse(*resolve(cmd.argv), complete=True)
        except click.UsageError:
            return "a mention in prose"
    for key in ("input_path", "bag", "bundle", "model"):
        if params.get(key) is not None and not (folder / params[key]).exists():
            return f"{params[key]} is not here"
    for spec in params.get("specs", ()):  # bench --compare: another bundle must be here too
        bundle = parse_compare(spec).get("bundle")
        if bundle is not None and not (folder / bundle).exists():
            return f"{bundle} is not here"
    args = list(cmd.argv[1:])
    if (
        ctx.info_name != "info"
        and "steps" in params
        and (ctx.get_parameter_source("steps").name != "COMMANDLINE" or params["steps"] > 10)
    ):
        args += ["--steps", "2"]
    if params.get("repeats", 0) > 3:
        args += ["--repeats", "1"]
    if params.get("live_hz") is not None:
        args += ["--live-seconds", "0.5"]  # the live stream's smoke run, not its measurement
    if "threads" in params and params["threads"] is None:
        args += ["--threads", "1"]  # one per core only slows a shared machine down
    return args


def test_the_quick_commands_run_as_documented(commands, fixtures, tmp_path, monkeypatch):
    from lgcvd_runtime.cli.run import main

    ran, failures = set(), []
    for n, cmd in enumerate(commands):
        try:
            ctx = check(cmd)
        except (AssertionError, pytest.fail.Exception):
            continue  # test_every_documented_command_parses_with_its_own_options says why
        args = quick(cmd, ctx, fixtures)
        if isinstance(args, str) or shape(ctx) in ran:
            continue
        ran.add(shape(ctx))
        folder = tmp_path / str(n)
        folder.mkdir()
        for name in FIXTURES:
            (folder / name).symlink_to(fixtures / name)
        monkeypatch.chdir(folder)
        result = CliRunner().invoke(main, args)
        if result.exit_code != 0:
            failures.append(
                f"{cmd}\n  lgcvd-run {' '.join(args)}: exit {result.exit_code}\n{result.output}"
            )
    assert not failures, "\n".join(failures)
    assert len(ran) >= 5, f"only {len(ran)} documented commands ran"


def shape(ctx: click.Context) -> tuple:
    """A command and the options it was given: one run per shape (the values are parsed)."""
    given = [k for k in ctx.params if ctx.get_parameter_source(k).name == "COMMANDLINE"]
    return (ctx.info_name, *sorted(given))


def imported_names_exist(block: Block) -> None:
    tree = ast.parse(block.code)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert importlib.util.find_spec(alias.name), (
                    f"{block.page}:{block.line}: no {alias.name}"
                )
        elif isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or importlib.util.find_spec(
                    f"{node.module}.{alias.name}"
                ), f"{block.page}:{block.line}: {node.module} has no {alias.name}"


PYTHON_PAGES = sorted({b.page for b in BLOCKS if b.lang == "python"})


@pytest.mark.parametrize("page", PYTHON_PAGES)
def test_python_blocks_compile_import_what_exists_and_run(page, monkeypatch):
    import lgcvd_runtime.api

    load = lgcvd_runtime.api.load  # smoke runs, as on the command line: 2 steps, 1 thread
    monkeypatch.setattr(lgcvd_runtime, "load", lambda *a, **k: load(*a, **k | SMOKE), raising=False)
    names, ran = stand_ins(), ""
    for block in (b for b in BLOCKS if b.page == page and b.lang == "python"):
        code = compile("\n" * (block.line - 1) + block.code, page, "exec")
        imported_names_exist(block)
        if block.needs is None:
            exec(code, names)
            ran += block.code
    assert names["handled"] or "handle(" not in ran, f"{page}: no window was handled"
    assert names["planner"].updates or "planner" not in ran, f"{page}: no live forecast in 60 s"


class Robot:
    """Runs the control loop until the planner has had a forecast, or 60 s."""

    def __init__(self, planner) -> None:
        self.planner, self.deadline = planner, time.monotonic() + 60

    @property
    def running(self) -> bool:
        return not self.planner.updates and time.monotonic() < self.deadline


class Planner:
    def __init__(self) -> None:
        self.updates = []

    def update(self, frames, index, age) -> None:
        self.updates.append((frames.shape, index, age))


def stand_ins() -> dict:
    """The names the docs' Python blocks leave to the reader: the demo clip's first frames for
    every camera, a robot whose loop ends once its planner has a forecast."""
    frames = demo_frames()[:2]
    handled: list = []
    planner = Planner()
    names = {"frames": frames, "front": frames, "left": frames, "right": frames}
    names |= {"front_camera": lambda: frames[-1], "wrist_camera": lambda: frames[0]}
    names |= {"handle": lambda start, f: handled.append((start, f.shape))}
    names |= {"handled": handled, "robot": Robot(planner), "planner": planner, "log": print}
    return names


def test_the_checker_refuses_unknown_options_missing_required_ones_and_bad_choices():
    def fails(line: str, inline: bool = False) -> bool:
        try:
            check(Command("test", tuple(line.split()), inline, None))
        except pytest.fail.Exception:
            return True
        return False

    assert not fails("lgcvd-export runs/x -o y.lgcvd --fp16")
    assert fails("lgcvd-export runs/x --fp16")  # -o is required
    assert not fails("lgcvd-export runs/x --fp16", inline=True)
    assert fails("lgcvd-run predict in.mp4 --no-such-option")
    assert fails("lgcvd-run predict in.mp4 --sampler no-such-sampler")
    assert fails("lgcvd-run no-such-command")
    assert fails("lgcvd-run predict in.mp4 --steps many")
