"""The `pidx` Typer application, its global options and what the commands share."""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(
    name="pidx",
    help="Particle identification for ALICE with JAX + Equinox: train, evaluate and export PID models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
state = {"debug": False}


def _print_version(value: bool) -> None:
    if value:
        from .._version import __version__

        typer.echo(f"pidx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
          version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                       help="Print pidx's version and exit.")):
    state["debug"] = debug


def enable_jax_cache() -> None:
    """Persistent XLA compilation cache: a second run of the same model skips compiling."""
    import os

    if os.environ.get("PIDX_JAX_CACHE", "1") == "0" or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    from ..data.datamodule import cache_dir

    import jax

    jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def print_comparison(run_dirs: list[Path], output: Path | None) -> None:
    """The models × momentum ranges table of `run_dirs` on the terminal, and as OUTPUT.md/.csv if given."""
    from ..evaluation import compare as cmp
    from ..runs import compare_runs

    table = compare_runs(run_dirs)
    cmp.print_table(table)
    if output is not None:
        md, cs = cmp.write_table(table, output)
        console.print(f"[green]wrote[/] {md} and {cs}")


@contextlib.contextmanager
def progress_reporter(what: str, *, every_s: float = 30.0):
    """A `(done, total)` callback showing progress on stderr: a bar with tracks/s and the time left on
    a terminal, a line every `every_s` seconds in a log file."""
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if console.is_terminal:
        columns = [TextColumn(f"{what}"), BarColumn(), TextColumn("{task.completed:,}/{task.fields[of]} tracks"),
                   TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(what, total=None, of="?", rate="")
            start = time.perf_counter()

            def show(done: int, total: int | None) -> None:
                rate = done / max(time.perf_counter() - start, 1e-9)
                bar.update(task, completed=done, total=total, of=f"{total:,}" if total else "?",
                           rate=f"{rate:,.0f} tracks/s")
            yield show
        return
    start = last = time.perf_counter()

    def log(done: int, total: int | None) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= every_s:
            last = now
            rate = done / (now - start)
            left = f", {(total - done) / rate:.0f} s left" if total and rate > 0 else ""
            of = f"/{total:,}" if total else ""
            console.print(f"{what}: {done:,}{of} tracks, {rate:,.0f} tracks/s{left}", highlight=False)
    yield log


PRIORS_HELP = ("Species abundances the posteriors are re-weighted to: pi=…,ka=…,pr=…,el=… (summing to 1) or a "
               "JSON file written by `pidx priors`; default the recipe's evaluation.priors, else the training sample's.")
