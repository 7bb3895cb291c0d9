"""Ensembles: K members in one vmapped program, each equal to a single run with its seed."""

import equinox as eqx
import jax
import numpy as np
import pytest

from pidx import Trainer, build_model
from pidx.data.schema import DEFAULT_LAYOUT
from pidx.models.ensemble import Ensemble, make_ensemble, member_key

from helpers import accuracy_on, detector_datamodule, separable_datamodule

SEEDS = (5, 42)


def _trainer(seed, epochs=2):
    return Trainer(max_epochs=epochs, batch_size=256, seed=seed, enable_progress_bar=False, callbacks=[])


@pytest.mark.parametrize("name,kwargs", [("dnn", {"hidden": (64, 32)}),
                                         ("fse_phase1", {"hidden_dim": 16, "group_dropout": 0.1})])
def test_member_equals_single_run_with_its_seed(name, kwargs):
    dm = separable_datamodule(2048, 512)
    ens, ens_state = make_ensemble(name, DEFAULT_LAYOUT, seeds=SEEDS, **kwargs)
    t_ens = _trainer(seed=0).fit(ens, dm, state=ens_state)
    assert t_ens.is_ensemble and isinstance(t_ens.model, Ensemble)
    for i, seed in enumerate(SEEDS):
        model, state = build_model(name, DEFAULT_LAYOUT, key=member_key(seed), **kwargs)
        t_one = _trainer(seed=seed).fit(model, dm, state=state)
        member, member_state = t_ens.model.member(i, t_ens.model_state)
        a = jax.tree.leaves(eqx.filter(member, eqx.is_inexact_array))
        b = jax.tree.leaves(eqx.filter(t_one.model, eqx.is_inexact_array))
        assert len(a) == len(b)
        for x, y in zip(a, b):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=2e-5, rtol=1e-4)
        for x, y in zip(jax.tree.leaves(member_state), jax.tree.leaves(t_one.model_state)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=2e-5, rtol=1e-4)
        # and the two members really differ (different seeds, not copies)
        if i:
            other = jax.tree.leaves(eqx.filter(t_ens.model.member(0), eqx.is_inexact_array))
            assert not np.allclose(np.asarray(a[0]), np.asarray(other[0]))


def test_ensemble_predicts_member_mean_and_learns():
    dm = detector_datamodule(2048, 512)  # readable only through TPC and TOF (helpers.detector_arrays)
    ens, state = make_ensemble("simplenn", DEFAULT_LAYOUT, seeds=(1, 2), hidden=(32,), dropout=0.1)
    trainer = _trainer(seed=0, epochs=10).fit(ens, dm, state=state)
    members = trainer.predict_members(dm.test)
    assert members.shape == (2, dm.test.num_tracks, 4)
    np.testing.assert_allclose(trainer.predict(dm.test), members.mean(0), atol=1e-6)
    tof = np.asarray(dm.test.group_mask)[:, DEFAULT_LAYOUT.group_names.index("tof")]
    # above what a model blind to TOF (0.5) or to every detector (0.25) can reach, and no better without TOF
    assert accuracy_on(trainer.predict, dm.test, np.flatnonzero(tof)) > 0.9
    assert accuracy_on(trainer.predict, dm.test, np.flatnonzero(~tof)) < 0.6
    assert trainer.learning_rate == pytest.approx(1e-3)
    trainer.learning_rate = 5e-4
    assert trainer.learning_rate == pytest.approx(5e-4)


def test_ensemble_needs_distinct_seeds():
    with pytest.raises(ValueError, match="distinct seeds"):
        make_ensemble("simplenn", DEFAULT_LAYOUT, seeds=(1, 1))
