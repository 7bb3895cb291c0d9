"""The `pidx` command line: fit, test, predict, simulate, recipes, report, compare, export.

Every user error is one red line on stderr and a non-zero exit code; `pidx --debug ...`
shows the full traceback instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from .errors import PidxError

app = typer.Typer(
    name="pidx",
    help="Particle identification for ALICE with JAX + Equinox: train, evaluate and export PID models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")):
    _state["debug"] = debug


@app.command()
def simulate(
    out: Path = typer.Option(..., "--out", "-o", help="Output file (.parquet or .csv)."),
    n: int = typer.Option(100_000, "--n", help="Number of tracks."),
    seed: int = typer.Option(231, "--seed", help="Random seed (same seed, same table)."),
    tof_scenario: str = typer.Option("run3", help="TOF matching: 'run3' (~65 % plateau) or 'seed_scarce' "
                                     "(~8.5 % TOF at 0.7-1.5 GeV/c like the seed data)."),
    missing: str = typer.Option("nan", help="Missing-value encoding: 'nan' or 'sentinel' (-999, Bayes all 0)."),
    no_oracle: bool = typer.Option(False, "--no-oracle", help="Leave out the oracle_prob_* columns."),
):
    """Simulate ALICE tracks (21 features + mc_pdg + the exact oracle posterior)."""
    import time

    from .data.io import encode_missing, write_table
    from .data.schema import ORACLE_COLUMNS
    from .data.simulate import SimulatorConfig
    from .data.simulate import simulate as run_simulation

    start = time.perf_counter()
    df = run_simulation(SimulatorConfig(n_tracks=n, seed=seed, tof_scenario=tof_scenario))
    if no_oracle:
        df = df.drop(columns=list(ORACLE_COLUMNS))
    df = encode_missing(df, missing)
    write_table(df, out)
    console.print(f"[green]wrote[/] {len(df):,} tracks to {out} in {time.perf_counter() - start:.1f} s")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `pidx` console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    _state["debug"] = "--debug" in args
    try:
        app(args=args, prog_name="pidx")  # standalone: usage errors print and exit 2
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except PidxError as exc:
        if _state["debug"]:
            raise
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True, markup=True)
        return 2
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
