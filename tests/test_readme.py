"""The README's and the help's command lines against the code they document: every `ijepa`
line parses (its commands and options exist, its values have their types), the config or
recipe it names loads with its `--set` keys, every option it gives a benchmark script is one
that script defines, every `make` target exists, and every repository path it names exists.
Fails when the README (or a help example) and the CLI drift apart."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup

import ijepa.cli
from ijepa.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SHELL_OPS = {">", ">>", "|", "||", "&&", ";", "&", "2>&1"}
TOP = ("ijepa/", "tests/", "benchmarks/", "evals/", "scripts/", "results/", "requirements/", ".ci/")
WRITTEN_LATER = {"results/gpu_check.md": "the GPU check's summary, written when it runs"}


def _fenced_lines(md: str) -> list[str]:
    """Command lines of the ```bash blocks, comments stripped, continuations joined."""
    lines, out = "\n".join(re.findall(r"```bash\n(.*?)```", md, re.S)).replace("\\\n", " ").splitlines(), []
    for line in lines:
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            out.append(line)
    return out


def _inline(md: str) -> list[str]:
    """Backticked spans outside code blocks."""
    return re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", md, flags=re.S))


def _argv(line: str) -> list[str]:
    """The words of a shell line up to its first redirection, pipe or separator."""
    words = []
    for w in shlex.split(line):
        if w in SHELL_OPS or w.startswith(">") or re.fullmatch(r"\d>.*", w):
            break
        words.append(w)
    return words


def _from(words: list[str], program: str) -> list[str] | None:
    """The words from `program` on (after `torchrun ... --no-python`, `.venv/bin/`, `nohup`)."""
    for i, w in enumerate(words):
        if w == program or w.endswith(f"/bin/{program}"):
            return [program, *words[i + 1:]]
    return None


COMMANDS = ("ijepa ", "python benchmarks/", "benchmarks/", "make ")
README_LINES = _fenced_lines(README) + [  # inline ones too, but not prose like `ijepa eval NAME`
    s for s in _inline(README) if s.startswith(COMMANDS) and "NAME" not in s]
IJEPA = [a for a in (_from(_argv(line), "ijepa") for line in README_LINES) if a]


def _root() -> typer.core.TyperCommand | TyperGroup:
    for mod in pkgutil.iter_modules(ijepa.cli.__path__):
        importlib.import_module(f"ijepa.cli.{mod.name}")
    return typer.main.get_command(app)


def _parse(argv: list[str]) -> tuple[list[str], typer.Context]:
    """Click's own parsing of `ijepa ARGS` down to the leaf command, invoking nothing: an
    unknown command or option, a missing value or a wrong type raises a UsageError."""
    cmd, names, ctx = _root(), [], None
    args = argv[1:]
    while True:
        if isinstance(cmd, TyperGroup) and names and not args and not cmd.invoke_without_command:
            return names, None  # the text names a group (`ijepa eval`), not a command line
        ctx = cmd.make_context(names[-1] if names else "ijepa", args, parent=ctx)
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not isinstance(cmd, TyperGroup) or not rest:
            assert names, f"{' '.join(argv)}: no command"
            return names, ctx
        name, cmd, args = cmd.resolve_command(ctx, rest)
        names.append(name)


def _check_values(names: list[str], ctx: typer.Context | None) -> None:
    """What the command would validate first: the pretraining config with its `--set` keys,
    an eval's recipe, options and `--set` resolved into its spec."""
    params = ctx.params if ctx else {}
    if names == ["pretrain"]:
        from ijepa.training.config import load_config

        load_config(params["config"], params["set_"])
    elif names[0] == "eval" and ctx:
        from ijepa.cli.evals import resolve_spec, spec_options
        from ijepa.evals import registry

        try:
            entry = registry.get(names[1])
        except ImportError as e:  # a dense eval without the [dense] extra: its command says so
            pytest.skip(str(e))
        resolve_spec(entry, spec_options(entry), params)


def _help_examples() -> list[str]:
    """The `Example:` line of every command's help."""
    out = []

    def walk(cmd, ctx: typer.Context) -> None:
        if (cmd.help or "").startswith("(unavailable"):  # a dense eval without the [dense] extra
            return
        out.extend(re.findall(r"Example: (?:\[bold\])?(.+?)(?:\[/\])?$", cmd.help or "", re.M))
        if isinstance(cmd, TyperGroup):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), typer.Context(cmd, parent=ctx, info_name=name))

    root = _root()
    walk(root, typer.Context(root, info_name="ijepa"))
    return out


@pytest.mark.parametrize("argv", IJEPA, ids=[" ".join(a)[:80] for a in IJEPA])
def test_each_readme_ijepa_line_parses_and_its_values_load(argv, monkeypatch):
    monkeypatch.chdir(ROOT)
    if "--help" in argv:  # a pointer to a command's help: the command exists and shows it
        from typer.testing import CliRunner

        _root()
        shown = CliRunner().invoke(app, argv[1:])
        assert shown.exit_code == 0 and "Usage:" in shown.output, shown.output
        return
    names, ctx = _parse(argv)
    _check_values(names, ctx)


def test_every_command_shows_an_example_that_parses_and_loads(monkeypatch):
    monkeypatch.chdir(ROOT)
    examples = _help_examples()
    leaves = []

    def count(cmd, ctx: typer.Context) -> None:
        if isinstance(cmd, TyperGroup):
            for name in cmd.list_commands(ctx):
                count(cmd.get_command(ctx, name), typer.Context(cmd, parent=ctx, info_name=name))
        elif not (cmd.help or "").startswith("(unavailable"):
            leaves.append(ctx.command_path)

    root = _root()
    count(root, typer.Context(root, info_name="ijepa"))
    covered = {" ".join(_parse(shlex.split(e))[0]) for e in examples}
    assert covered >= {p.removeprefix("ijepa ") for p in leaves}, "commands without an Example: line"
    for example in examples:
        names, ctx = _parse(shlex.split(example))
        _check_values(names, ctx)


def _script_options(path: Path) -> set[str]:
    """The `--options` a benchmark script's argparse (or shell `case`) defines, read statically."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".sh":
        return set(re.findall(r"(--[a-z][a-z-]*)\)", text))
    tree = ast.parse(text)
    return {a.value for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "add_argument"
            for a in n.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")}


def test_each_readme_benchmark_line_uses_options_its_script_defines():
    lines = [w for w in (_argv(line) for line in README_LINES) if w]
    scripts = [w[w.index(s):] for w in lines for s in w if s.startswith("benchmarks/") and s.endswith((".py", ".sh"))]
    assert scripts, "no benchmark lines found: the extraction is broken"
    for words in scripts:
        path = ROOT / words[0]
        assert path.is_file(), f"{words[0]}: no such script"
        given = {w.split("=")[0] for w in words[1:] if w.startswith("--")}
        assert given <= _script_options(path), f"{' '.join(words)}: {sorted(given - _script_options(path))} not defined by {words[0]}"


def test_each_readme_make_target_exists():
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M))
    used = {w[1] for w in (_argv(line) for line in README_LINES) if len(w) > 1 and w[0] == "make"}
    assert used and used <= targets, sorted(used - targets)


def test_every_repository_path_the_readme_names_exists():
    named = {re.sub(r"\.yaml:[\w.-]+$", ".yaml", w.rstrip(".,:;)")) for span in _inline(README) + README_LINES for w in span.split()}  # GRID.yaml:VARIANT
    paths = {p for p in named if p.startswith(TOP) and not re.search(r"[<>{}*]|NAME|GRID|VARIANT", p)}
    assert len(paths) > 20, "the extraction is broken"
    missing = sorted(p for p in paths if not (ROOT / p).exists() and p not in WRITTEN_LATER)
    assert not missing, f"README names paths that do not exist: {missing}"


def test_the_extraction_sees_the_readme():
    """The parametrized test above is only as good as what it sees: the main commands."""
    seen = {" ".join(a[:3]) for a in IJEPA}
    assert {"ijepa pretrain", "ijepa eval linear", "ijepa eval knn", "ijepa decoder train", "ijepa export runs/fmnist_vit_tiny"} <= seen | {" ".join(a[:2]) for a in IJEPA}


def test_every_eval_help_shows_each_option_with_its_default():
    """The README: `ijepa eval NAME --help` shows every option with its default."""
    from typer.testing import CliRunner

    from ijepa.cli.evals import spec_options
    from ijepa.evals import registry

    _root()
    for name in registry.names():
        out = CliRunner().invoke(app, ["eval", name, "--help"], env={"COLUMNS": "200"})
        assert out.exit_code == 0, out.output
        shown = out.output.count("[default:")
        assert shown >= len(spec_options(registry.get(name))), f"ijepa eval {name} --help: {shown} defaults shown"


def test_the_python_api_example_runs_as_written(tmp_path, monkeypatch):
    """The README's Python block, executed as it stands, on a run at its path and two images of
    a user's (it once used `images` without defining them or showing their preprocessing)."""
    import numpy as np
    from fixtures.decoder import write_tiny_run
    from PIL import Image

    block = re.search(r"### Python API\n\n```python\n(.*?)```", README, re.S).group(1)
    write_tiny_run(tmp_path / "runs" / "fmnist_vit_tiny")
    rng = np.random.default_rng(0)
    for name in ("shirt.png", "boot.png"):
        Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)).save(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md (Python API)", "exec"), scope)
    assert tuple(scope["images"].shape) == (2, 1, 32, 32) and tuple(scope["tokens"].shape) == (2, 64, 192)
    assert len(scope["feats"]) == 2  # the tiny run has 2 blocks
