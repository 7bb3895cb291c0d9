"""The one number formatter and the one Markdown table writer of pidx's reports and tables."""

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


__all__ = ["fmt_number", "markdown_table"]
