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
    line = (f"accuracy [bold]{test['accuracy']:.4f}[/]  balanced accuracy {test['balanced_accuracy']:.4f}  "
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


__all__ = ["fmt_number", "markdown_table", "print_metrics", "print_selection"]
