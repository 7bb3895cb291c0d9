"""The `pidx` command line: fit, test, predict, priors, simulate, recipes, report, compare, export.

- `app`: the Typer application, its global `--debug` option and the helpers commands share.
- `train`: simulate, fit (with resuming), recipes. `use`: the commands that read a run directory.
- `main`: the console script's entry point (one-line errors, exit codes).
"""

from .app import app
from .main import main

__all__ = ["app", "main"]
