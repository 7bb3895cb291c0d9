"""Models × momentum ranges comparison table over run directories (`pidx compare`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..data.schema import CLASS_NAMES
from ..utils import atomic_write_text


def _fmt(v, digits=4):
    return "-" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def compare_runs(run_dirs) -> list[dict]:
    """One row per run (and per baseline stored in its metrics.json)."""
    from ..run import read_run

    rows = []
    for run_dir in run_dirs:
        cfg, metrics = read_run(run_dir)
        if "test" not in metrics:
            continue
        rng = cfg["data"]["momentum_range"]
        base = {"range": rng if isinstance(rng, str) else f"{rng[0]}-{rng[1]}", "run": str(run_dir)}
        t = metrics.get("training", {})
        rows.append({**base, "model": cfg["model"]["name"], **_scores(metrics["test"]),
                     "gap_to_oracle_pp": metrics["test"].get("gap_to_oracle_pp"),
                     "train_s": t.get("wall_s"), "epochs": t.get("epochs_run")})
        for name, b in (metrics.get("baselines") or {}).items():
            rows.append({**base, "model": f"[{name}]", **_scores(b),
                         "gap_to_oracle_pp": b.get("gap_to_oracle_pp"), "train_s": b.get("fit_s"), "epochs": None})
    return rows


def _scores(m: dict) -> dict:
    out = {"accuracy": m.get("accuracy"), "balanced_accuracy": m.get("balanced_accuracy"),
           "macro_auc": m.get("macro_auc")}
    for c in CLASS_NAMES:
        pc = (m.get("per_class") or {}).get(c, {})
        out[f"eff_{c}"] = pc.get("efficiency")
        out[f"pur_{c}"] = pc.get("purity")
    return out


COLUMNS = ["range", "model", "accuracy", "balanced_accuracy", "macro_auc",
           *[f"{k}_{c}" for c in CLASS_NAMES for k in ("eff", "pur")], "gap_to_oracle_pp", "train_s", "epochs"]


def to_markdown(rows: list[dict]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = "".join("| " + " | ".join(_fmt(r.get(c), 2 if c in ("train_s", "gap_to_oracle_pp") else 4)
                                     for c in COLUMNS) + " |\n" for r in rows)
    return head + body


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS + ["run"], extrasaction="ignore")
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
             "gap_to_oracle_pp", "train_s"]
    for c in shown:
        table.add_column(c, justify="left" if c in ("range", "model") else "right", no_wrap=c == "model")
    for r in rows:
        table.add_row(*[escape(_fmt(r.get(c), 2 if c in ("train_s", "gap_to_oracle_pp") else 4)) for c in shown])
    Console().print(table)


__all__ = ["compare_runs", "to_markdown", "to_csv", "write_table", "print_table", "COLUMNS"]
