"""`ijepa` command line: parse, call one library function, print.

Each module of this package registers its commands on `app` or `bench_app` (`ijepa eval`
commands come from the eval registry, see `ijepa.cli.evals`); all of them are imported by
`main()`, so adding a command is adding a module.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(help="I-JEPA pretraining, evaluation and benchmarks.", no_args_is_help=True, pretty_exceptions_enable=False)
bench_app = typer.Typer(help="Throughput and FLOPs benchmarks.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from ijepa import __version__

        print(f"ijepa {__version__}")
        raise typer.Exit()


@app.callback()
def _app(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit")) -> None:
    """I-JEPA pretraining, evaluation and benchmarks."""


USER_ERRORS = (FileNotFoundError, FileExistsError, ValueError, KeyError)


def fail(e: BaseException) -> None:
    """One line naming what is wrong, exit status 2."""
    msg = e.args[0] if isinstance(e, KeyError) and e.args else e
    # escaped: messages quote expected forms like [x, y, width, height], which rich would eat as tags
    console.print(f"[bold red]error:[/] {escape(str(msg))}", highlight=False, soft_wrap=True)  # never wrapped: one line
    raise typer.Exit(2)


def main() -> None:
    from ijepa.extras import MissingExtra

    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
    try:
        app(prog_name="ijepa")
    except MissingExtra as e:  # raised by importing a dense eval's code when it runs, outside the errors its command catches
        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    sys.exit(main())
