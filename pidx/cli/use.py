"""Commands that use a run directory: test, validate, predict, priors, export, report, compare."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import PidxError
from .app import PRIORS_HELP, app, console, enable_jax_cache, print_comparison, progress_reporter


TREE_HELP = ("ROOT input: the tree to read (default the recipe's data.tree); a path such as DF_1/pid_features, or a "
             "glob such as 'DF_*/pid_features' for every time-frame directory. A file with no top-level tree reads it "
             "from every DF_* directory.")
INPUT_HELP = "ROOT (tree pid_features), Parquet or CSV: a file, a directory or a glob"


@app.command()
def test(
    run_dir: Path = typer.Argument(..., help="A run directory written by `pidx fit`."),
    data: Path | None = typer.Option(None, "--data", help=f"Labelled tracks to test on instead of the test split "
                                     f"({INPUT_HELP}; the run's momentum range and preprocessing are applied)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the metrics as JSON here."),
    priors: str | None = typer.Option(None, "--priors", help=PRIORS_HELP),
    tree: str | None = typer.Option(None, "--tree", help=TREE_HELP),
):
    """Evaluate a run's best checkpoint on its test split or on another file."""
    enable_jax_cache()
    from ..runs import read_priors, test_run
    from ..evaluation.tables import data_notes

    metrics = test_run(run_dir, data, priors=None if priors is None else read_priors(priors), tree=tree)
    _show_and_write(f"{run_dir}: {metrics['data']}", metrics, output)
    for note in data_notes(metrics["data_summary"]):
        console.print(note, highlight=False, markup=False)


def _show_and_write(title: str, metrics: dict, output: Path | None, extra: dict | None = None) -> None:
    """`pidx test` / `pidx validate`: the metrics on the terminal, and as JSON in `output` if given."""
    from ..evaluation.tables import print_metrics
    from ..utils import atomic_write_json

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
    enable_jax_cache()
    from ..runs import validate_run

    metrics = validate_run(run_dir, checkpoint)
    _show_and_write(f"{run_dir}: validation split ({metrics['checkpoint']})", metrics, output,
                    {"nll": f"{metrics['nll']:.4f}"})


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory written by `pidx fit`."),
    input: Path = typer.Option(..., "--input", "-i", help=f"Tracks ({INPUT_HELP}); labels are not needed or read."),
    output: Path = typer.Option(..., "--output", "-o", help="Output .parquet, .csv or .root, written when complete."),
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
    tree: str | None = typer.Option(None, "--tree", help=TREE_HELP),
    chunk_tracks: int = typer.Option(32_768, "--chunk-tracks", help="Rows read, scored and written at a time: the "
                                     "memory predict takes, whatever the file's size."),
):
    """Write posteriors (prob_pi, prob_ka, prob_pr, prob_el), `pred` and selections for every input row, in order."""
    enable_jax_cache()
    from ..evaluation.tables import print_selection
    from ..runs import predict_file, read_priors

    with progress_reporter("predict") as progress:
        info = predict_file(run_dir, input, output, uncertainty=uncertainty, mc_dropout=mc_dropout, seed=seed,
                            disabled_groups=tuple(without), priors=None if priors is None else read_priors(priors),
                            select=tuple(select), tree=tree, chunk_tracks=chunk_tracks, on_progress=progress)
    extra = "" if info["priors"] is None else ", priors " + ", ".join(f"{k}={v:.4g}" for k, v in info["priors"].items())
    console.print(f"[green]wrote[/] {info['rows']:,} rows to {info['output']} in {info['seconds']:.1f} s "
                  f"({info['tracks_per_s'] or 0:,.0f} tracks/s; checkpoint {info['checkpoint']}{extra}; added "
                  f"{', '.join(info['columns'])})", highlight=False)
    for line in prediction_notes(info["counts"]):
        console.print(line, highlight=False, markup=False)
    for sel in info["selections"]:
        print_selection(sel)


def prediction_notes(counts: dict) -> list[str]:
    """What `pidx predict` did to rows that are not plain measurements, one line each."""
    from ..evaluation.tables import data_notes

    summary = {"made_absent": counts["made_absent"],
               "implausible": {"policy": "absent", "columns": counts["implausible"]} if counts["implausible"] else None}
    lines = data_notes(summary)
    if counts["unscored"]:
        lines.append(f"{counts['unscored']:,} rows not scored (missing or implausible momentum): NaN probabilities, "
                     "empty pred")
    return lines


@app.command("priors")
def priors_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by `pidx fit`."),
    input: Path = typer.Option(..., "--input", "-i", help=f"Unlabelled tracks ({INPUT_HELP})."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the abundances as JSON (for --priors)."),
    tree: str | None = typer.Option(None, "--tree", help=TREE_HELP),
):
    """Estimate the species abundances of an unlabelled file (label-shift EM on the run's posteriors)."""
    enable_jax_cache()
    from ..runs import estimate_file_priors

    info = estimate_file_priors(run_dir, input, output, tree=tree)
    state = "converged" if info["converged"] else "did NOT converge"
    console.print(f"{info['tracks']:,} tracks in range: " + ", ".join(f"{k}={v:.4f}" for k, v in info["priors"].items())
                  + f" (EM {state} in {info['iterations']} iterations; training sample: "
                  + ", ".join(f"{k}={v:.4f}" for k, v in info["train_priors"].items()) + ")", highlight=False)
    if output is not None:
        console.print(f"[green]wrote[/] {output} (use it with --priors {output})")


@app.command("shift")
def shift_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by `pidx fit`."),
    input: Path = typer.Option(..., "--input", "-i", help=f"Collision data, labels unread ({INPUT_HELP})."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the comparison as JSON."),
    tree: str | None = typer.Option(None, "--tree", help=TREE_HELP),
):
    """Compare a data file with the run's MC: which detector group tells them apart, which inputs moved, abundances."""
    enable_jax_cache()
    from ..evaluation.shift import shift_markdown
    from ..runs import shift_run

    info = shift_run(run_dir, input, output, tree=tree)
    console.print(shift_markdown(info), highlight=False, markup=False)
    if "abundances" in info:
        console.print("abundances in the data (label-shift EM): " + ", ".join(
            f"{k}={v:.4f}" for k, v in info["abundances"]["data"].items()) + "; MC train: " + ", ".join(
            f"{k}={v:.4f}" for k, v in info["abundances"]["mc_train"].items()), highlight=False, markup=False)
    if output is not None:
        console.print(f"[green]wrote[/] {output}")


@app.command()
def export(
    run_dirs: list[Path] = typer.Argument(..., help="A run directory written by `pidx fit`; --target o2physics takes "
                                          "several runs trained on adjacent pT windows: one model per pT bin."),
    output: Path = typer.Option(..., "--output", "-o", help="--target onnx: the .onnx file (a .json sidecar is "
                                "written beside); --target o2physics: a directory for the ONNX file(s) and "
                                "pid-onnx-inference.json."),
    target: str = typer.Option("onnx", "--target", help="onnx: the layout's raw inputs (21 legacy columns or the 46-"
                               "value O2 vector) → 4 probabilities; o2physics: the model(s) and configuration O2Physics' "
                               "pid-onnx-inference runs."),
    format: str = typer.Option("onnx", "--format", help="File format: onnx."),
    tolerance: float = typer.Option(1e-5, help="Largest |Δprob| allowed between ONNX Runtime and pidx in the check."),
    no_check: bool = typer.Option(False, "--no-check", help="Skip the ONNX Runtime check."),
    priors: str | None = typer.Option(None, "--priors", help=PRIORS_HELP),
):
    """Export the run's best model, preprocessing included, for ONNX Runtime or O2Physics."""
    if format != "onnx":
        raise PidxError(f"--format {format!r} is not supported; accepted: onnx")
    if target not in ("onnx", "o2physics"):
        raise PidxError(f"--target {target!r} is not supported; accepted: onnx, o2physics")
    if target == "onnx" and len(run_dirs) > 1:
        raise PidxError(f"--target onnx exports one run, got {len(run_dirs)}; several runs (one per pT bin) go to "
                        "--target o2physics")
    from ..runs import export_o2physics, export_run, read_priors

    weights = None if priors is None else read_priors(priors)
    if target == "o2physics":
        info = export_o2physics(run_dirs, output, tolerance=tolerance, check=not no_check, priors=weights)
    else:
        info = export_run(run_dirs[0], output, target=target, tolerance=tolerance, check=not no_check, priors=weights)
    for model in info.get("models", [info]):
        check = model.get("check")
        checked = (f"; ONNX Runtime matches pidx to {check['max_abs_diff']:.1e} on {check['tracks']:,} tracks"
                   if check else "; not checked")
        written = Path(model["output"])
        bin_text = f", pT bin {model['pt_bin']}" if "pt_bin" in model else ""
        console.print(f"[green]wrote[/] {written} (input [N, {model['input']['shape'][1]}], output [N, 4]"
                      f"{bin_text}{checked})", highlight=False)
    if "configuration" in info:
        console.print(f"[green]wrote[/] {info['configuration']} (binsPtMl {info['binsPtMl']})", highlight=False)
    else:
        console.print(f"[green]wrote[/] {Path(info['output']).with_suffix('.json')}", highlight=False)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run directory written by `pidx fit`."),
    max_tracks: int = typer.Option(20_000, help="Test tracks used for feature importance and group ablation."),
):
    """Write <RUN_DIR>/report/: ROC, efficiency/purity vs p, confusion, dE/dx, importance, ablation, report.md."""
    enable_jax_cache()
    from ..runs import report_run

    path = report_run(run_dir, max_tracks=max_tracks,
                      on_rebuild=lambda: console.print("computing baselines on the test split…"))
    console.print(f"[green]wrote[/] {path}")


@app.command()
def compare(
    run_dirs: list[Path] = typer.Argument(..., help="Run directories (e.g. runs/*/*)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write OUTPUT.md and OUTPUT.csv."),
):
    """Models × momentum ranges table (accuracy, AUC, efficiency/purity, gap to oracle), baselines as rows."""
    print_comparison(run_dirs, output)
