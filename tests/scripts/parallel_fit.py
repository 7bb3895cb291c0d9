"""Fit small models on 1 and on several devices, or as one process of a jax.distributed group,
and print the results as JSON (run by tests/test_parallel.py in a fresh interpreter, since
XLA_FLAGS and jax.distributed must be set before JAX starts).

usage: parallel_fit.py DEVICES ROOT OUT.json         (each case on 1 and on DEVICES devices)
       parallel_fit.py process COORDINATOR NUM_PROCESSES PROCESS_ID ROOT OUT.json
"""

import json
import sys

import jax

if sys.argv[1] == "process":
    jax.distributed.initialize(sys.argv[2], num_processes=int(sys.argv[3]), process_id=int(sys.argv[4]))

import numpy as np  # noqa: E402

sys.path.insert(0, __file__.rsplit("/scripts/", 1)[0])
from helpers import detector_arrays, detector_datamodule, separable_datamodule  # noqa: E402
from pidx.data.schema import DEFAULT_LAYOUT  # noqa: E402

from pidx.models import build_model  # noqa: E402
from pidx.training import DANN, Callback, CrossEntropy, CSVLogger, EarlyStopping, ModelCheckpoint, Trainer  # noqa: E402


class FirstEpochLosses(Callback):
    def on_train_epoch_end(self, trainer):
        if trainer.current_epoch == 0:
            self.losses = trainer.epoch_step_losses.tolist()


def fit(name, devices, root, members=1, dropout=0.0, data="detectors", objective=None):
    if data == "detectors":  # readable only through TPC and TOF; the groups that carry nothing come and go
        dm = detector_datamodule(n_train=2048, n_val=512, seed=3, others_fraction=0.7)
    else:  # separable with margin: gradients nowhere near zero, so Adam's steps agree to float precision
        dm = separable_datamodule(n_train=2048, n_val=512, seed=3)
    dm.setup()
    loss = CrossEntropy()
    if objective == "dann":  # a second stream (the target) sharded like the first, the domain classifier replicated
        dm.target = detector_arrays(1024, seed=9, shift=2.0)
        loss = DANN(CrossEntropy(), weight=0.5)
    kwargs = {"dropout": dropout} if dropout else {}
    if members > 1:
        from pidx.models import make_ensemble

        model, state = make_ensemble(name, DEFAULT_LAYOUT, seeds=[5, 6], **kwargs)
    else:
        model, state = build_model(name, DEFAULT_LAYOUT, key=jax.random.PRNGKey(5), **kwargs)
    first = FirstEpochLosses()
    t = Trainer(max_epochs=3, batch_size=256, loss=loss, class_weights="none", seed=11,
                enable_progress_bar=False, devices=devices, default_root_dir=root,
                callbacks=[first, EarlyStopping(patience=10), ModelCheckpoint(), CSVLogger()])
    t.fit(model, dm, state=state)
    test = t.test()
    leaves = [np.asarray(a).ravel() for a in jax.tree.leaves(t.params)]
    return {"weights": np.concatenate(leaves).tolist()[:4000], "val_nll": [h["val/nll"] for h in t.history],
            "test_accuracy": test["accuracy"], "devices": t.summary["devices"],
            "processes": t.summary["processes"], "probs": t.last_probs[:50].tolist(),
            "first_losses": first.losses}


cases = {"dnn": ("dnn", {}), "dnn_separable": ("dnn", {"data": "separable"}),
         "fse_phase1": ("fse_phase1", {"dropout": 0.1}), "ensemble": ("simplenn", {"members": 2}),
         "dann": ("simplenn", {"objective": "dann"})}
out = {}
root = sys.argv[-2]
if sys.argv[1] == "process":
    for case, (name, kw) in cases.items():
        out[case] = fit(name, "auto", f"{root}/{case}", **kw)
    from pidx.training.parallel import any_process

    # a signal that reached process 1 only stops both
    out["any_process"] = [any_process(jax.process_index() == 1), any_process(False)]
else:
    for case, (name, kw) in cases.items():
        out[case] = {"one": fit(name, 1, f"{root}/{case}-one", **kw),
                     "many": fit(name, int(sys.argv[1]), f"{root}/{case}-many", **kw)}
    try:
        Trainer(batch_size=250, devices=int(sys.argv[1]), enable_progress_bar=False).fit(
            build_model("simplenn", DEFAULT_LAYOUT, key=jax.random.PRNGKey(0))[0], separable_datamodule(1000, 100))
    except Exception as exc:  # noqa: BLE001 - the test reads the message
        out["indivisible_batch_error"] = f"{type(exc).__name__}: {exc}"
with open(sys.argv[-1], "w") as fh:
    json.dump(out, fh)
