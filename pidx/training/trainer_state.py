"""The parts of `Trainer` that save and restore its state: checkpoints and stop signals (Ctrl-C, SIGTERM, SIGUSR1).

Split from trainer.py to keep each file to one job; `Trainer` inherits these methods.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import threading
from pathlib import Path

import numpy as np

from ..errors import TrainingError
from .checkpoint import load_tree, read_meta, remove_checkpoint, save_checkpoint
from .parallel import any_process


# SIGTERM: SLURM and the grid before a kill; SIGUSR1: SLURM's --signal=USR1@<seconds> warning
STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGUSR1", None)) if s is not None)


class CheckpointingMixin:
    """`save_checkpoint`, `load_checkpoint`, `load_weights`, `remove_checkpoint` and the graceful stop-signal handler."""

    def _graceful_interrupt(self):
        """First Ctrl-C, SIGTERM or SIGUSR1 (what batch systems send before they stop a job): stop after
        the running chunk of steps (state stays consistent, on_exception can checkpoint it); a second
        signal interrupts at once."""
        @contextlib.contextmanager
        def handler():
            if threading.current_thread() is not threading.main_thread():
                yield
                return

            def on_signal(signum, frame):
                if self._interrupt_requested:
                    raise self._interruption("interrupted at once")
                self._interrupt_requested, self._interrupt_signal = True, signum
                print(f"\n{signal.Signals(signum).name}: stopping after the current steps (send it again to abort "
                      "now)", file=sys.stderr, flush=True)

            previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
            try:
                yield
            finally:
                for s, before in previous.items():
                    signal.signal(s, before)
            # Reached only when training ended normally. A signal that came after the loop's last look
            # (the handlers are back to what they were, so none can slip in now) still stops the fit as
            # promised, before evaluation, with a checkpoint to resume from; in every process alike.
            if any_process(self._interrupt_requested):
                raise self._interruption("interrupted after the last epoch")

        return handler()

    def _interruption(self, message: str) -> KeyboardInterrupt:
        """The exception that stops `fit` on a signal; `signal_number` says which one (exit code 128 + it)."""
        exc = KeyboardInterrupt(message)
        exc.signal_number = int(self._interrupt_signal or signal.SIGINT)
        return exc

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write the whole training state to the directory `path` (atomically)."""
        meta = {
            "epochs_completed": len(self.history), "global_step": self.global_step, "seed": self.seed,
            "epoch_step": self.epoch_step,
            **self._chunk_meta(),
            "history": self.history, "step_validations": self.step_validations, "stop_reason": self.stop_reason, "should_stop": self.should_stop,
            "metrics": self.logged_metrics, "class_weights": np.asarray(self.class_weights).tolist(),
            "preprocessing": getattr(getattr(self.datamodule, "preprocessor", None), "to_dict", dict)(),
            "config": self.config, "callbacks": {},
        }
        trees = {"model": self.params, "model_state": self.model_state, "opt_state": self.opt_state}
        if self.objective_params is not None:  # trained with the model, never exported
            trees["objective"] = self.objective_params
            trees["objective_opt_state"] = self.objective_opt_state
        keys = [cb.state_key for cb in self.callbacks]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise TrainingError(f"two callbacks share the checkpoint state key {twice[0]!r}; give one of them another "
                                "state_key (or another monitor or mode)")
        for cb in self.callbacks:
            st = dict(cb.state_dict())
            if "weights" in st:
                trees[_tree_name(cb.state_key)] = st.pop("weights")
                st["__weights__"] = True
            meta["callbacks"][cb.state_key] = st
        self._call_hook("on_save_checkpoint", meta)
        if not self.is_global_zero:  # one writer in a multi-process run; the others hold the same state
            return Path(path)
        return save_checkpoint(path, trees=trees, meta=meta)

    def _chunk_meta(self) -> dict:
        """Streamed data: the chunking and where in the epoch's chunk order the state stands."""
        feed = self.feed
        if feed is None or not feed.streamed:
            return {}
        return {"train_chunking": feed.chunking, "chunk_position": feed.position(self.current_epoch, self.epoch_step)}

    def _check_chunking(self) -> None:
        """A resumed fit continues exactly only over the chunks its checkpoint was written with."""
        saved, now = self._checkpoint_chunking, self.feed.chunking
        if saved is not None and list(saved) != list(now) and self._resume_step:
            raise TrainingError(f"the checkpoint was written mid-epoch over train chunks [chunk tracks, tracks] = "
                                f"{saved}, this fit has {now or 'the split in memory'}: resume with the same data, "
                                "memory budget and chunk size")

    def remove_checkpoint(self, path: str | Path) -> None:
        if self.is_global_zero:
            remove_checkpoint(path)

    def load_weights(self, path: str | Path) -> None:
        """Put a checkpoint's model weights and model state in place; nothing else changes."""
        read_meta(path)
        self.params = load_tree(path, "model", self.params)
        self.model_state = load_tree(path, "model_state", self.model_state)

    def load_checkpoint(self, path: str | Path) -> dict:
        """Restore weights, optimizer, model state, counters and callback states."""
        meta = read_meta(path)
        self.params = load_tree(path, "model", self.params)
        self.model_state = load_tree(path, "model_state", self.model_state)
        self.opt_state = load_tree(path, "opt_state", self.opt_state)
        if self.objective_params is not None:
            self.objective_params = load_tree(path, "objective", self.objective_params)
            self.objective_opt_state = load_tree(path, "objective_opt_state", self.objective_opt_state)
        self.current_epoch = int(meta["epochs_completed"])
        self.global_step = int(meta["global_step"])
        self._resume_step = int(meta.get("epoch_step", 0))
        self._checkpoint_chunking = meta.get("train_chunking", [])
        self.history = list(meta["history"])
        self.step_validations = list(meta.get("step_validations", []))
        self.should_stop = bool(meta["should_stop"])
        self.stop_reason = meta["stop_reason"] if self.should_stop else None  # e.g. max_time's: not this fit's
        self.logged_metrics = dict(meta["metrics"])
        classes = [type(cb).__qualname__ for cb in self.callbacks]
        for cb in self.callbacks:
            key = cb.state_key
            if key not in meta["callbacks"] and classes.count(type(cb).__qualname__) == 1:
                key = type(cb).__qualname__  # written before states were keyed by monitor and mode
            st = meta["callbacks"].get(key)
            if st is None:
                continue
            if st.pop("__weights__", False):
                st["weights"] = load_tree(path, _tree_name(key), (self.params, self.model_state))
            cb.load_state_dict(st)
        self._call_hook("on_load_checkpoint", meta)
        return meta



def _tree_name(state_key: str) -> str:
    """The file stem of a callback's pytree in a checkpoint: `extra-<state key>`, made filename-safe
    (a plain class name, as older checkpoints have it, stays as it is)."""
    return "extra-" + re.sub(r"[^A-Za-z0-9_.=-]+", "_", state_key)


__all__ = ["CheckpointingMixin"]
