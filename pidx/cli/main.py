"""The entry point of the `pidx` console script.

Every user error is one red line on stderr and a non-zero exit code; `pidx --debug ...`
shows the full traceback instead.
"""

from __future__ import annotations

import sys

from rich.markup import escape

from ..errors import PidxError
from . import train, use  # noqa: F401  (their @app.command()s register the commands)
from .app import app, console, state


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `pidx` console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    state["debug"] = "--debug" in args
    try:
        app(args=args, prog_name="pidx")  # standalone: usage errors print and exit 2
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except PidxError as exc:
        if state["debug"]:
            raise
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130
    except Exception as exc:  # a bug, not a user error: still one line unless --debug
        if state["debug"]:
            raise
        console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} (run `pidx --debug ...` for the "
                      "traceback and report it)", highlight=False, soft_wrap=True)
        return 3
    return 0

