"""Commands that make things: `pidx simulate`, `pidx fit` (with resuming) and `pidx recipes`."""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer
from rich.console import Console

from ..errors import PidxError
from .app import app, console, enable_jax_cache, print_comparison


@app.command()
def simulate(
    out: Path = typer.Option(..., "--out", "-o", help="Output file (.root, .parquet or .csv)."),
    n: int = typer.Option(100_000, "--n", help="Number of tracks."),
    seed: int = typer.Option(231, "--seed", help="Random seed (same seed, same table)."),
    layout: str = typer.Option("o2", "--layout", help="'o2': the pid_features tree of O2Physics' extractor (all "
                               "branches, O2's types and missing values, MC truth); 'legacy': the seed's 21 columns."),
    tof_scenario: str = typer.Option("run3", help="TOF matching: 'run3' (~65 % plateau) or 'seed_scarce' "
                                     "(~8.5 % TOF at 0.7-1.5 GeV/c like the seed data)."),
    missing: str = typer.Option("nan", help="Legacy layout: missing-value encoding 'nan' or 'sentinel' (-999, Bayes "
                                "all 0). The o2 layout always writes O2's own conventions."),
    no_oracle: bool = typer.Option(False, "--no-oracle", help="Leave out the oracle_prob_* (and vector_oracle_prob_*) columns."),
    scenario: str = typer.Option("mc", help="'mc': the detectors as the n-sigma's calibration assumes them; 'data': "
                                 "collision data's mismatches (TPC n-sigma shifted and wider, TOF offset and resolution, "
                                 "matching, abundances; pidx.simulation.DATA_SCENARIO), the oracle of that physics."),
):
    """Simulate ALICE tracks with MC truth and the exact oracle posterior (oracle_prob_*)."""
    import time

    from ..data.io import encode_missing, write_table
    from ..data.layouts import O2_FILE_BRANCHES
    from ..data.schema import ORACLE_COLUMNS, VECTOR_ORACLE_COLUMNS
    from ..simulation import SCENARIOS, SimulatorConfig
    from ..simulation import simulate as run_simulation

    if scenario not in SCENARIOS:
        raise PidxError(f"--scenario must be one of {sorted(SCENARIOS)}, got {scenario!r}")
    start = time.perf_counter()
    df = run_simulation(SimulatorConfig(n_tracks=n, seed=seed, tof_scenario=tof_scenario, layout=layout,
                                        **SCENARIOS[scenario]))
    if no_oracle:
        df = df.drop(columns=[c for c in ORACLE_COLUMNS + VECTOR_ORACLE_COLUMNS if c in df])
    if layout == "legacy":
        df = encode_missing(df, missing)
    elif missing != "nan":
        raise PidxError("--missing applies to --layout legacy; the o2 layout writes O2's own missing values")
    write_table(df, out, root_types=O2_FILE_BRANCHES if layout == "o2" else None)
    console.print(f"[green]wrote[/] {len(df):,} tracks to {out} in {time.perf_counter() - start:.1f} s")


@app.command()
def fit(
    recipes: list[Path] = typer.Argument(None, help="Recipe YAML file(s); several run in sequence."),
    config: list[Path] = typer.Option([], "--config", "-c", help="A recipe file merged over every recipe (or, with no "
                                      "recipe, the recipe itself); repeat to merge several in order; --set goes last."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe key: --set trainer.max_epochs=5"),
    output: Path | None = typer.Option(None, "--output", "-o", help="Run directory (default runs/<recipe>/<time>)."),
    resume: str | None = typer.Option(None, "--resume", help="Checkpoint directory; 'last' (the latest run's last "
                                      "checkpoint, or --output's); or 'auto': the newest of --output's interrupted/"
                                      "last checkpoints if it has one, else a fresh start (for job scripts)."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved recipe, each value with the "
                                      "file, --set or default it came from, and exit."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --output directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
):
    """Train from recipe(s), test on the held-out split and write the run directory."""
    from ..recipe import annotated_recipe, load_recipe

    recipes = list(recipes or [])
    if not recipes and not config:
        raise PidxError("give a recipe file (pidx fit recipes/fse_phase1_mid.yaml) or --config FILE")
    stacks = [[r, *config] for r in recipes] or [list(config)]
    sources = [{} for _ in stacks]
    configs = [load_recipe(stack, set_, sources=src) for stack, src in zip(stacks, sources)]  # all before training
    if print_config:
        for cfg, src in zip(configs, sources):
            typer.echo(annotated_recipe(cfg, src), nl=False)
        return
    recipes = [stack[0] for stack in stacks]
    if output is not None and len(configs) > 1:
        raise PidxError("--output names one run directory; with several recipes omit it (runs/<recipe>/<time>)")
    enable_jax_cache()
    writer = _join_processes(output)
    quiet = quiet or not writer
    from ..runs.rundir import exclusive_run

    results = []
    for cfg in configs:
        with contextlib.ExitStack() as hold:  # one writer per run directory, for the whole fit
            if writer and output is not None:
                hold.enter_context(exclusive_run(output))
            run, start = _run_dir(cfg, output, resume, overwrite, writer, quiet)
            if writer and output is None:
                hold.enter_context(exclusive_run(run.path))
            metrics = _fit_one(cfg, run, start, quiet, recipes[len(results)])
        results.append((run.path, metrics))
        if writer:
            _print_result(cfg, run.path, metrics, quiet)
    if len(results) > 1:
        print_comparison([r for r, _ in results], None)


def _run_dir(cfg, output: Path | None, resume: str | None, overwrite: bool, writer: bool, quiet: bool):
    """(the run directory, the checkpoint to start from or None) of one recipe."""
    from ..runs import RunDir

    start = resume
    if resume == "auto":
        start = _auto_resume(cfg, output)
        if start is None and not quiet:
            console.print(f"--resume auto: no checkpoint to continue from; starting {cfg.name} afresh")
    if start or not writer:
        return RunDir(_resume_dir(cfg, output, start)), start
    cut_short = resume == "auto" and output is not None and (output / "recipe.yaml").is_file()
    return RunDir.create(cfg.name, output, overwrite=overwrite or cut_short), start


def _fit_one(cfg, run, start, quiet: bool, recipe_path) -> dict:
    from ..runs import fit_recipe

    if not quiet:
        console.print(f"[bold]pidx fit[/] {cfg.name}: {cfg.model.name} on "
                      f"{cfg.data.source} ({cfg.data.momentum_range_yaml}) → {run.path}"
                      + (f" from {start}" if start else ""))
    try:
        return fit_recipe(cfg, run, resume=start, quiet=quiet)
    except KeyboardInterrupt as exc:
        where = getattr(exc, "checkpoint_path", None)
        if where:
            console.print(f"[yellow]interrupted[/]: state saved to {where}; continue with "
                          f"`pidx fit {recipe_path} --output {run.path} --resume auto`")
        else:
            console.print("[yellow]interrupted[/] before any checkpoint could be written")
        raise typer.Exit(128 + getattr(exc, "signal_number", 2)) from None  # 130 Ctrl-C, 143 SIGTERM, 138 USR1


def _print_result(cfg, run_dir: Path, metrics: dict, quiet: bool) -> None:
    """The test metrics, and the model beside the best baseline and the ceiling, with a warning per
    measure on which a baseline beats it."""
    from rich.markup import escape

    from ..evaluation.tables import fit_verdict, print_metrics

    t = metrics["training"]
    if not quiet:
        print_metrics(f"{cfg.name}: test split", metrics["test"], {"majority": f"{metrics['majority_baseline']:.4f}"})
    out = Console()
    out.print(f"[green]done[/] {cfg.name}: accuracy {metrics['test']['accuracy']:.4f} after "
              f"{t['epochs_run']} epochs ({t['stop_reason']}), {t['wall_s']:.0f} s; results in {run_dir}")
    lines, warnings = fit_verdict(metrics)
    for line in lines:
        out.print(f"  {line}", highlight=False, markup=False)
    for warning in warnings:
        out.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)


def _join_processes(output: Path | None) -> bool:
    """Join a jax.distributed group if the environment says so (docs/scale.md); True for the writing process."""
    import jax

    from ..training.parallel import initialize_distributed

    if initialize_distributed() and output is None:
        raise PidxError(f"a {jax.process_count()}-process fit needs --output: every process must name the same "
                        "run directory, on a filesystem they all see")
    return jax.process_index() == 0


def _auto_resume(cfg, output: Path | None) -> str | None:
    """`--resume auto`: the newest checkpoint of `--output` (or of the recipe's latest run), or None."""
    from ..runs import RunDir

    if output is None:
        run = RunDir.latest_with_checkpoint(cfg.name)
        return None if run is None else str(run.newest_checkpoint())
    ckpt = RunDir(output).newest_checkpoint()
    if ckpt is None and (output / "metrics.json").is_file():
        raise PidxError(f"--resume auto: {output} holds a finished run without checkpoints to continue from; "
                        "choose another --output")
    return None if ckpt is None else str(ckpt)


def _resume_dir(cfg, output: Path | None, resume: str) -> Path:
    if output is not None:
        return output
    if resume != "last":
        return Path(resume).parent.parent  # <run>/checkpoints/<name>
    base = Path("runs") / cfg.name
    runs = sorted(p for p in base.glob("*") if (p / "checkpoints" / "last").is_dir()) if base.is_dir() else []
    if not runs:
        raise PidxError(f"--resume last: no run of '{cfg.name}' with a last checkpoint under {base}/; "
                        "give --output RUN_DIR or a checkpoint path")
    return runs[-1]


@app.command("recipes")
def list_recipes(
    directory: Path = typer.Argument(Path("recipes"), help="Directory with recipe YAML files."),
):
    """List the recipes in a directory with their one-line descriptions."""
    from rich.table import Table

    from ..recipe import load_recipe

    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise PidxError(f"{directory}: no *.yaml recipes found")
    table = Table(title=str(directory), show_header=True)
    table.add_column("recipe", no_wrap=True)
    for col in ("model", "momentum", "description"):
        table.add_column(col)
    for f in files:
        cfg = load_recipe(f)
        table.add_row(f.stem, cfg.model.name, str(cfg.data.momentum_range_yaml), cfg.description)
    Console().print(table)
