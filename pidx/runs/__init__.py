"""Runs: a recipe becomes a run directory (`fit_recipe`), and a finished run is used
(`test_run`, `validate_run`, `predict_file`, `report_run`, `export_run`, `compare_runs`).

- `rundir`: the run directory as one object (`RunDir`);
- `build`: recipe → data module, model, callbacks, Trainer, Predictor;
- `result`: the one decision of which weights are the run's result;
- `fit`: train → result → test → calibrate → baselines → report, in one in-memory pass;
- `use`, `predict` and `export`: using a finished run (`predict` streams files of any size);
- `shift`: how a data file differs from the run's MC (`shift_run`).
"""

from .build import data_log_line, load_predictor, make_callbacks, make_datamodule, make_model, make_trainer
from .export import export_o2physics, export_run
from .fit import fit_recipe, majority_baseline
from .result import RunResult, decide_result
from .rundir import RunDir
from .predict import predict_file
from .shift import shift_run
from .use import compare_runs, estimate_file_priors, read_priors, report_run, test_run, validate_run

__all__ = ["data_log_line", "load_predictor", "make_callbacks", "make_datamodule", "make_model", "make_trainer",
           "export_run", "export_o2physics", "fit_recipe", "majority_baseline", "RunResult", "decide_result", "RunDir", "compare_runs",
           "predict_file", "report_run", "test_run", "read_priors", "estimate_file_priors", "validate_run", "shift_run"]
