"""Models × momentum ranges comparison table (`pidx compare`), from the runs' metrics."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..data.schema import CLASS_NAMES
from ..utils import atomic_write_text
from .baselines import CEILINGS
from .tables import fmt_number, markdown_table


def comparison_rows(runs) -> list[dict]:
    """One row per run and per baseline stored in its metrics.

    **Arguments:**

    - `runs`: `(run, model, momentum_range, metrics)` per run: a label (its directory), the
      model name, the recipe's momentum range (a name or `(low, high)`) and its metrics.
    """
    rows = []
    for run, model, rng, metrics in runs:
        if "test" not in metrics:
            continue
        base = {"range": rng if isinstance(rng, str) else f"{rng[0]}-{rng[1]}", "run": str(run)}
        t = metrics.get("training", {})
        rows.append({**base, "model": model, **_scores(metrics["test"]),
                     **_gaps(metrics["test"]), "train_s": t.get("wall_s"), "epochs": t.get("epochs_run")})
        for name, b in (metrics.get("baselines") or {}).items():
            rows.append({**base, "model": f"[{name}]", **_scores(b),
                         **_gaps(b), "train_s": b.get("fit_s"), "epochs": None})
    return rows


def _gaps(m: dict) -> dict:
    return {g: m.get(g) for g in GAPS}


def _scores(m: dict) -> dict:
    out = {"accuracy": m.get("accuracy"), "balanced_accuracy": m.get("balanced_accuracy"),
           "macro_auc": m.get("macro_auc")}
    for c in CLASS_NAMES:
        pc = (m.get("per_class") or {}).get(c, {})
        for short, key in (("eff", "efficiency"), ("pur", "purity")):
            out[f"{short}_{c}"] = pc.get(key)
            # the 68.27 % Clopper–Pearson interval metrics.json keeps beside the rate (runs before it: none)
            out[f"{short}_{c}_low"], out[f"{short}_{c}_high"] = (pc.get(f"{key}_interval") or [None, None])
    return out


GAPS = tuple(f"gap_to_{ceiling}_pp" for ceiling in CEILINGS)
COLUMNS = ["range", "model", "accuracy", "balanced_accuracy", "macro_auc",
           *[f"{k}_{c}" for c in CLASS_NAMES for k in ("eff", "pur")], *GAPS, "train_s", "epochs"]


INTERVALS = [f"{k}_{c}_{end}" for c in CLASS_NAMES for k in ("eff", "pur") for end in ("low", "high")]


def _cell(row: dict, column: str) -> str:
    text = fmt_number(row.get(column), 2 if column in ("train_s", *GAPS) else 4)
    low, high = row.get(f"{column}_low"), row.get(f"{column}_high")
    return text if low is None or high is None else f"{text} [{low:.4f}, {high:.4f}]"


def to_markdown(rows: list[dict]) -> str:
    """The table; efficiencies and purities with their 68.27 % Clopper–Pearson intervals in brackets."""
    return markdown_table(COLUMNS, [[_cell(r, c) for c in COLUMNS] for r in rows])


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS + INTERVALS + ["run"], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_table(rows: list[dict], output: str | Path) -> tuple[Path, Path]:
    """Write `<output>.md` and `<output>.csv`."""
    output = Path(output)
    stem = output.with_suffix("") if output.suffix in (".md", ".csv") else output
    md, cs = stem.with_suffix(".md"), stem.with_suffix(".csv")
    atomic_write_text(md, to_markdown(rows))
    atomic_write_text(cs, to_csv(rows))
    return md, cs


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="pidx compare", show_header=True)
    shown = ["range", "model", "accuracy", "balanced_accuracy", "macro_auc", "eff_ka", "pur_ka",
             *GAPS, "train_s"]
    for c in shown:
        table.add_column(c, justify="left" if c in ("range", "model") else "right", no_wrap=c == "model")
    for r in rows:
        table.add_row(*[escape(_cell(r, c)) for c in shown])
    Console().print(table)


__all__ = ["comparison_rows", "to_markdown", "to_csv", "write_table", "print_table", "COLUMNS"]
