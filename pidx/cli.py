"""The `pidx` command line: fit, test, predict, priors, simulate, recipes, report, compare, export.

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
):
    """Simulate ALICE tracks with MC truth and the exact oracle posterior (oracle_prob_*)."""
    import time

    from .data.io import encode_missing, write_table
    from .data.layouts import O2_FILE_BRANCHES
    from .data.schema import ORACLE_COLUMNS, VECTOR_ORACLE_COLUMNS
    from .data.simulate import SimulatorConfig
    from .data.simulate import simulate as run_simulation

    start = time.perf_counter()
    df = run_simulation(SimulatorConfig(n_tracks=n, seed=seed, tof_scenario=tof_scenario, layout=layout))
    if no_oracle:
        df = df.drop(columns=[c for c in ORACLE_COLUMNS + VECTOR_ORACLE_COLUMNS if c in df])
    if layout == "legacy":
        df = encode_missing(df, missing)
    elif missing != "nan":
        raise PidxError("--missing applies to --layout legacy; the o2 layout writes O2's own missing values")
    write_table(df, out, root_types=O2_FILE_BRANCHES if layout == "o2" else None)
    console.print(f"[green]wrote[/] {len(df):,} tracks to {out} in {time.perf_counter() - start:.1f} s")


def _enable_jax_cache() -> None:
    """Persistent XLA compilation cache: a second run of the same model skips compiling."""
    import os

    if os.environ.get("PIDX_JAX_CACHE", "1") == "0" or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    from .data.datamodule import cache_dir

    import jax

    jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


@app.command()
def fit(
    recipes: list[Path] = typer.Argument(..., help="Recipe YAML file(s); several run in sequence."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe key: --set trainer.max_epochs=5"),
    output: Path | None = typer.Option(None, "--output", "-o", help="Run directory (default runs/<recipe>/<time>)."),
    resume: str | None = typer.Option(None, "--resume", help="Checkpoint directory; 'last' (the latest run's last "
                                      "checkpoint, or --output's); or 'auto': the newest of --output's interrupted/"
                                      "last checkpoints if it has one, else a fresh start (for job scripts)."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved recipe and exit."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --output directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
):
    """Train from recipe(s), test on the held-out split and write the run directory."""
    from .evaluation.tables import print_metrics
    from .recipe import dump_recipe, load_recipe

    configs = [load_recipe(r, set_) for r in recipes]  # validate all before training any
    if print_config:
        for cfg in configs:
            typer.echo(dump_recipe(cfg))
        return
    if output is not None and len(configs) > 1:
        raise PidxError("--output names one run directory; with several recipes omit it (runs/<recipe>/<time>)")
    _enable_jax_cache()
    writer = _join_processes(output)
    quiet = quiet or not writer
    from .runs import RunDir, fit_recipe

    results = []
    for cfg in configs:
        start = resume
        if resume == "auto":
            start = _auto_resume(cfg, output)
            if start is None and not quiet:
                console.print(f"--resume auto: no checkpoint to continue from; starting {cfg.name} afresh")
        run = RunDir(_resume_dir(cfg, output, start)) if start or not writer else RunDir.create(
            cfg.name, output, overwrite=overwrite or (resume == "auto" and output is not None
                                                      and (output / "recipe.yaml").is_file()))  # a run cut short
        run_dir = run.path
        if not quiet:
            console.print(f"[bold]pidx fit[/] {cfg.name}: {cfg.model.name} on "
                          f"{cfg.data.source} ({cfg.data.momentum_range_yaml}) → {run_dir}"
                          + (f" from {start}" if start else ""))
        try:
            metrics = fit_recipe(cfg, run, resume=start, quiet=quiet)
        except KeyboardInterrupt as exc:
            where = getattr(exc, "checkpoint_path", None)
            if where:
                console.print(f"[yellow]interrupted[/]: state saved to {where}; continue with "
                              f"`pidx fit {recipes[len(results)]} --output {run_dir} --resume auto`")
            else:
                console.print("[yellow]interrupted[/] before any checkpoint could be written")
            raise typer.Exit(128 + getattr(exc, "signal_number", 2)) from None  # 130 Ctrl-C, 143 SIGTERM, 138 USR1
        results.append((run_dir, metrics))
        if not writer:
            continue
        t = metrics["training"]
        if not quiet:
            print_metrics(f"{cfg.name}: test split", metrics["test"],
                           {"majority": f"{metrics['majority_baseline']:.4f}"})
        Console().print(f"[green]done[/] {cfg.name}: accuracy {metrics['test']['accuracy']:.4f} after "
                        f"{t['epochs_run']} epochs ({t['stop_reason']}), {t['wall_s']:.0f} s; results in {run_dir}")
    if len(results) > 1:
        _compare([r for r, _ in results], None)


def _join_processes(output: Path | None) -> bool:
    """Join a jax.distributed group if the environment says so (docs/scale.md); True for the writing process."""
    import jax

    from .training.parallel import initialize_distributed

    if initialize_distributed() and output is None:
        raise PidxError(f"a {jax.process_count()}-process fit needs --output: every process must name the same "
                        "run directory, on a filesystem they all see")
    return jax.process_index() == 0


def _auto_resume(cfg, output: Path | None) -> str | None:
    """`--resume auto`: the newest checkpoint of `--output` (or of the recipe's latest run), or None."""
    from .runs import RunDir

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


def _compare(run_dirs, output):
    from .evaluation import compare as cmp
    from .runs import compare_runs

    table = compare_runs(run_dirs)
    cmp.print_table(table)
    if output is not None:
        md, cs = cmp.write_table(table, output)
        console.print(f"[green]wrote[/] {md} and {cs}")


PRIORS_HELP = ("Species abundances the posteriors are re-weighted to: pi=…,ka=…,pr=…,el=… (summing to 1) or a "
               "JSON file written by `pidx priors`; default the recipe's evaluation.priors, else the training sample's.")


@app.command()
def test(
    run_dir: Path = typer.Argument(..., help="A run directory written by `pidx fit`."),
    data: Path | None = typer.Option(None, "--data", help="Labelled CSV/Parquet to test on instead of the test split "
                                     "(the run's momentum range and preprocessing are applied)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the metrics as JSON here."),
    priors: str | None = typer.Option(None, "--priors", help=PRIORS_HELP),
):
    """Evaluate a run's best checkpoint on its test split or on another file."""
    _enable_jax_cache()
    from .runs import read_priors, test_run

    metrics = test_run(run_dir, data, priors=None if priors is None else read_priors(priors))
    _show_and_write(f"{run_dir}: {metrics['data']}", metrics, output)


def _show_and_write(title: str, metrics: dict, output: Path | None, extra: dict | None = None) -> None:
    """`pidx test` / `pidx validate`: the metrics on the terminal, and as JSON in `output` if given."""
    from .evaluation.tables import print_metrics
    from .utils import atomic_write_json

    print_metrics(title, metrics, extra)
    if output is not None:
        atomic_write_json(output, metrics)
        console.print(f"[green]wrote[/] {output}")


@app.command()
def validate(
    run_dir: Path = typer.Argument(..., help="A run directory written by `pidx fit`."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="A checkpoint of the run (default: the one its "
                                           "test used), e.g. RUN/checkpoints/last."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the metrics as JSON here."),
):
    """Evaluate a run's checkpoint on its validation split (nll: the monitored val/nll)."""
    _enable_jax_cache()
    from .runs import validate_run

    metrics = validate_run(run_dir, checkpoint)
    _show_and_write(f"{run_dir}: validation split ({metrics['checkpoint']})", metrics, output,
                    {"nll": f"{metrics['nll']:.4f}"})


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory written by `pidx fit`."),
    input: Path = typer.Option(..., "--input", "-i", help="CSV/Parquet tracks (labels not needed)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output .parquet or .csv."),
    uncertainty: bool = typer.Option(False, "--uncertainty", help="Add per-track `entropy`; for an ensemble run also "
                                     "`mutual_information` and `disagreement` between members."),
    mc_dropout: int = typer.Option(0, "--mc-dropout", help="Also sample N forward passes with dropout on (single "
                                   "models): `mc_entropy`, `mutual_information`, `disagreement`."),
    seed: int = typer.Option(0, "--seed", help="Seed of the MC dropout masks."),
    without: list[str] = typer.Option([], "--without", help="O2 layout: treat a detector group as absent on every "
                                      "track, like pid-onnx-inference's use* options (tpc, tof, trd, its, emcal, "
                                      "hmpid); repeat for several."),
    priors: str | None = typer.Option(None, "--priors", help=PRIORS_HELP),
    select: list[str] = typer.Option([], "--select", help="A working point, e.g. ka:purity=0.95 or pr:efficiency=0.9: "
                                     "writes select_ka_purity_0.95 (threshold chosen on the run's validation split) "
                                     "and prints the efficiency and purity it reaches on the test split; repeatable."),
):
    """Write posteriors (prob_pi, prob_ka, prob_pr, prob_el), `pred` and selections for every input row."""
    _enable_jax_cache()
    from .evaluation.tables import print_selection
    from .runs import predict_file, read_priors

    info = predict_file(run_dir, input, output, uncertainty=uncertainty, mc_dropout=mc_dropout, seed=seed,
                        disabled_groups=tuple(without), priors=None if priors is None else read_priors(priors),
                        select=tuple(select))
    extra = "" if info["priors"] is None else ", priors " + ", ".join(f"{k}={v:.4g}" for k, v in info["priors"].items())
    console.print(f"[green]wrote[/] {info['rows']:,} rows to {info['output']} (checkpoint {info['checkpoint']}"
                  f"{extra}; added {', '.join(info['columns'])})")
    for sel in info["selections"]:
        print_selection(sel)


@app.command("priors")
def priors_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by `pidx fit`."),
    input: Path = typer.Option(..., "--input", "-i", help="Unlabelled tracks (ROOT/CSV/Parquet)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the abundances as JSON (for --priors)."),
):
    """Estimate the species abundances of an unlabelled file (label-shift EM on the run's posteriors)."""
    _enable_jax_cache()
    from .runs import estimate_file_priors

    info = estimate_file_priors(run_dir, input, output)
    state = "converged" if info["converged"] else "did NOT converge"
    console.print(f"{info['tracks']:,} tracks in range: " + ", ".join(f"{k}={v:.4f}" for k, v in info["priors"].items())
                  + f" (EM {state} in {info['iterations']} iterations; training sample: "
                  + ", ".join(f"{k}={v:.4f}" for k, v in info["train_priors"].items()) + ")", highlight=False)
    if output is not None:
        console.print(f"[green]wrote[/] {output} (use it with --priors {output})")


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A run directory written by `pidx fit`."),
    output: Path = typer.Option(..., "--output", "-o", help="--target onnx: the .onnx file (a .json sidecar is "
                                "written beside); --target o2physics: a directory for pid_feature_model.onnx and "
                                "pid-onnx-inference.json."),
    target: str = typer.Option("onnx", "--target", help="onnx: the layout's raw inputs (21 legacy columns or the 46-"
                               "value O2 vector) → 4 probabilities; o2physics: the model and configuration O2Physics' "
                               "pid-onnx-inference runs."),
    format: str = typer.Option("onnx", "--format", help="File format: onnx."),
    tolerance: float = typer.Option(1e-5, help="Largest |Δprob| allowed between ONNX Runtime and pidx in the check."),
    no_check: bool = typer.Option(False, "--no-check", help="Skip the ONNX Runtime check (needs no onnxruntime)."),
    priors: str | None = typer.Option(None, "--priors", help=PRIORS_HELP),
):
    """Export the run's best model, preprocessing included, for ONNX Runtime or O2Physics."""
    if format != "onnx":
        raise PidxError(f"--format {format!r} is not supported; accepted: onnx")
    if target not in ("onnx", "o2physics"):
        raise PidxError(f"--target {target!r} is not supported; accepted: onnx, o2physics")
    from .runs import export_run, read_priors

    info = export_run(run_dir, output, target=target, tolerance=tolerance, check=not no_check,
                      priors=None if priors is None else read_priors(priors))
    check = info.get("check")
    checked = (f"; ONNX Runtime matches pidx to {check['max_abs_diff']:.1e} on {check['tracks']:,} tracks"
               if check else "; not checked")
    written = Path(info["output"])
    extra = info.get("configuration") or written.with_suffix(".json")
    console.print(f"[green]wrote[/] {written} and {extra} (input [N, {info['input']['shape'][1]}]"
                  f", output [N, 4]{checked})")


@app.command("recipes")
def list_recipes(
    directory: Path = typer.Argument(Path("recipes"), help="Directory with recipe YAML files."),
):
    """List the recipes in a directory with their one-line descriptions."""
    from rich.table import Table

    from .recipe import load_recipe

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


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run directory written by `pidx fit`."),
    max_tracks: int = typer.Option(20_000, help="Test tracks used for feature importance and group ablation."),
):
    """Write <RUN_DIR>/report/: ROC, efficiency/purity vs p, confusion, dE/dx, importance, ablation, report.md."""
    _enable_jax_cache()
    from .runs import report_run

    path = report_run(run_dir, max_tracks=max_tracks,
                      on_rebuild=lambda: console.print("computing baselines on the test split…"))
    console.print(f"[green]wrote[/] {path}")


@app.command()
def compare(
    run_dirs: list[Path] = typer.Argument(..., help="Run directories (e.g. runs/*/*)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write OUTPUT.md and OUTPUT.csv."),
):
    """Models × momentum ranges table (accuracy, AUC, efficiency/purity, gap to oracle), baselines as rows."""
    _compare(run_dirs, output)


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
    except Exception as exc:  # a bug, not a user error: still one line unless --debug
        if _state["debug"]:
            raise
        console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc} (run `pidx --debug ...` for the "
                      "traceback and report it)", highlight=False, soft_wrap=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
