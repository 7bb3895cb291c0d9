"""The one number formatter and the one Markdown table writer of pidx's reports and tables, and the
terminal summaries of a test split and of a working point."""

from __future__ import annotations


def fmt_number(value, digits: int = 4) -> str:
    """`value` with `digits` decimals; `–` for a missing value, `str()` for a non-number."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub Markdown table; cells are written with `str()` (format numbers first)."""
    out = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
    return out + "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in rows)


def print_metrics(title: str, test: dict, extra: dict | None = None) -> None:
    """Per-species table and one summary line of `classification_metrics` output, on the terminal."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=True)
    table.add_column("species")
    for col in ("AUC", "efficiency", "purity", "F1", "tracks"):
        table.add_column(col, justify="right")
    for name, m in test["per_class"].items():
        table.add_row(name, fmt_number(m["auc"]), fmt_number(m["efficiency"]), fmt_number(m["purity"]),
                      fmt_number(m["f1"]), str(m.get("n_true", "")))
    out = Console()
    out.print(table)
    line = (f"accuracy [bold]{test['accuracy']:.4f}[/]  balanced accuracy (argmax) {test['balanced_accuracy']:.4f}  "
            f"macro AUC {fmt_number(test['macro_auc'])}  on {test['n_tracks']:,} tracks")
    for k, v in (extra or {}).items():
        line += f"  {k} {v}"
    out.print(line)


def print_selection(sel: dict) -> None:
    """A working point's validation threshold and its test efficiency and purity, overall and per bin."""
    from rich.console import Console

    out, t, per = Console(stderr=True), sel["test"], sel["test"]["per_bin"]  # beside predict's other messages
    if not sel["reached_on_validation"]:
        out.print(f"{sel['working_point']}: not reachable on the validation split; {sel['column']} selects nothing")
        return
    out.print(f"{sel['working_point']}: threshold {sel['threshold']:.4g} (validation); test efficiency "
              f"{fmt_number(t['efficiency'])}, purity {fmt_number(t['purity'])} ({t['selected']:,} selected)")
    edges = per["bins"]
    for b, (eff, pur, n) in enumerate(zip(per["efficiency"], per["purity"], per["n_true"])):
        if n:
            out.print(f"  {edges[b]:g}-{edges[b + 1]:g} GeV/c: efficiency {fmt_number(eff)}, "
                      f"purity {fmt_number(pur)} ({n:,} true)", highlight=False)


def data_notes(summary: dict) -> list[str]:
    """What loading did to tracks that are not plain π/K/p/e measurements, in words: groups made absent
    for a NaN/-999 under a present flag, values no detector produces (per column), other species (per
    species, and where they went), rows dropped."""
    notes = []
    if summary.get("made_absent"):
        notes.append("flag set but values NaN/-999, group treated as absent: " +
                     ", ".join(f"{k} {v:,}" for k, v in summary["made_absent"].items()))
    odd = summary.get("implausible")
    if odd:
        how = "group treated as absent" if odd["policy"] == "absent" else "refused"
        notes.append("values no detector produces (inf or out of range), " + how + ": " +
                     ", ".join(f"{k} {v:,}" for k, v in odd["columns"].items()))
    other = summary.get("other_species")
    if other:
        text = "other species " + ", ".join(f"{k} {v:,}" for k, v in other.get("tracks", {}).items())
        if other["policy"] == "exclude":
            text += " (excluded)"
        elif "contamination" in other:
            kept = other["contamination"]
            text += (f" (in range: {other['excluded_from_training']:,} left out of training; "
                     f"{kept.get('val', 0):,} validation and {kept.get('test', 0):,} test tracks kept as contamination,"
                     " counted in every purity)")
        notes.append(text)
    dropped = {k: v for k, v in summary.get("dropped", {}).items() if k != "other_species"}
    if dropped:
        notes.append("dropped " + ", ".join(f"{k} {v:,}" for k, v in dropped.items()))
    return notes


CEILING_NAMES = ("vector_oracle", "oracle")  # the exact posteriors, nearest ceiling first


def _triple(m: dict) -> str:
    return f"{fmt_number(m.get('accuracy'))} / {fmt_number(m.get('macro_auc'))} / {fmt_number(m.get('nll'))}"


def fit_verdict(metrics: dict) -> tuple[list[str], list[str]]:
    """What the end of `pidx fit` says: the model beside the best baseline and the nearest ceiling on
    the same test tracks (accuracy / macro AUC / NLL), and a warning per measure on which a baseline
    beats the model. Returns (lines, warnings)."""
    test = metrics["test"]
    model = test.get("baseline_sample", test)  # streamed: the baselines ran on the test split's sample
    baselines = metrics.get("baselines", {})
    lines = [f"model: {_triple(model)} (accuracy / macro AUC / NLL)"]
    methods = {k: v for k, v in baselines.items() if k not in CEILING_NAMES}
    if methods:
        best = max(methods, key=lambda k: methods[k]["accuracy"])
        lines.append(f"best baseline {best}: {_triple(methods[best])}")
    ceiling = next((c for c in CEILING_NAMES if c in baselines), None)
    if ceiling:
        gap = 100 * (baselines[ceiling]["accuracy"] - model["accuracy"])
        lines.append(f"ceiling {ceiling}: {_triple(baselines[ceiling])} (model {gap:.2f} pp below)")
    warnings = []
    for key, label, sign in (("accuracy", "accuracy", 1), ("macro_auc", "macro AUC", 1), ("nll", "NLL", -1)):
        rivals = {k: v[key] for k, v in methods.items() if v.get(key) is not None}
        if rivals and model.get(key) is not None:
            name = max(rivals, key=lambda k: sign * rivals[k])
            if sign * rivals[name] > sign * model[key]:
                warnings.append(f"{name} beats the model on {label} ({fmt_number(rivals[name])} "
                                f"against {fmt_number(model[key])}) on the same test tracks")
    return lines, warnings


__all__ = ["fmt_number", "markdown_table", "print_metrics", "print_selection", "fit_verdict", "CEILING_NAMES",
           "data_notes"]
