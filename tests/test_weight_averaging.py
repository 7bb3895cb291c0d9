"""WeightAveraging: an exponential moving average of the weights kept by the optimizer, put in place for
validation, checkpoint selection and the fitted model, without changing what is trained."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import separable_datamodule
from pidx.data.schema import DEFAULT_LAYOUT
from pidx.errors import TrainingError
from pidx.models import build_model, make_ensemble
from pidx.recipe import validate_recipe
from pidx.runs.build import make_trainer
from pidx.training import CrossEntropy, EarlyStopping, ModelCheckpoint, Trainer, WeightAveraging, track_average
from pidx.training.metrics import macro_auc
from pidx.training.step import average_of


@pytest.fixture(scope="module")
def dm():
    return separable_datamodule(2048, 512, seed=3)


def small():
    return build_model("simplenn", DEFAULT_LAYOUT, key=jax.random.PRNGKey(0), hidden=(32, 16), dropout=0.1)


def fit(dm, callbacks=(), max_epochs=3, ckpt_path=None, model=None, **kw):
    model, state = model or small()
    t = Trainer(max_epochs=max_epochs, batch_size=128, loss=CrossEntropy(), class_weights="none",
                enable_progress_bar=False, callbacks=list(callbacks), **kw)
    return t.fit(model, dm, state=state, ckpt_path=ckpt_path)


def arrays(tree):
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


def assert_same(a, b):
    xs, ys = arrays(a), arrays(b)
    assert len(xs) == len(ys) > 0
    for x, y in zip(xs, ys):
        np.testing.assert_array_equal(x, y)


def test_track_average_is_the_moving_average_it_documents():
    decay, steps = 0.9, 30
    opt = optax.chain(optax.sgd(0.1), track_average(decay))
    params = {"w": jnp.array([1.0, -2.0])}
    state = opt.init(params)
    expected = np.array([1.0, -2.0])
    for t in range(steps):
        grads = {"w": jnp.array([np.sin(t), np.cos(t)], jnp.float32)}
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        rate = min(decay, (1 + t) / (10 + t))
        expected = rate * expected + (1 - rate) * np.asarray(params["w"])
    np.testing.assert_allclose(np.asarray(average_of(state)["w"]), expected, rtol=1e-5)
    # and it passes the updates through: the weights are plain SGD's
    sgd_params = {"w": jnp.array([1.0, -2.0])}
    for t in range(steps):
        sgd_params = {"w": sgd_params["w"] - 0.1 * jnp.array([np.sin(t), np.cos(t)], jnp.float32)}
    np.testing.assert_allclose(np.asarray(params["w"]), np.asarray(sgd_params["w"]), rtol=1e-6)


@pytest.mark.parametrize("val_check_interval", [None, 5])
def test_the_fitted_model_is_the_average_and_training_is_unchanged(dm, val_check_interval):
    plain = fit(dm, val_check_interval=val_check_interval)
    averaging = WeightAveraging(decay=0.95)
    averaged = fit(dm, [averaging], val_check_interval=val_check_interval)
    # the weights trained are exactly those of the same fit without averaging ...
    assert_same(averaging._training_weights, plain.params)
    # ... and the model the fit ends with is the optimizer's average of them, which differs
    assert_same(averaged.params, average_of(averaged.opt_state))
    assert not np.allclose(arrays(averaged.params)[0], arrays(plain.params)[0])
    # the last validation measured that average: its macro AUC is the fitted model's on the validation split
    probs, labels = averaged.validation_outputs
    assert averaged.history[-1]["val/macro_auc"] == pytest.approx(macro_auc(labels, probs))
    val_probs, _ = averaged._evaluate_arrays(dm.val)
    np.testing.assert_allclose(np.asarray(val_probs), probs, atol=1e-6)
    assert not np.allclose(np.asarray(plain._evaluate_arrays(dm.val)[0]), probs, atol=1e-6)


def test_resume_from_a_checkpoint_holding_the_average_is_exact(dm, tmp_path):
    def run(root, epochs, ckpt_path=None):
        return fit(dm, [WeightAveraging(decay=0.9), ModelCheckpoint(save_top_k=1), EarlyStopping(patience=50)],
                   max_epochs=epochs, ckpt_path=ckpt_path, default_root_dir=root)

    straight = run(tmp_path / "straight", 4)
    run(tmp_path / "resumed", 2)
    resumed = run(tmp_path / "resumed", 4, ckpt_path=tmp_path / "resumed" / "checkpoints" / "last")
    assert_same((resumed.params, resumed.opt_state), (straight.params, straight.opt_state))
    assert [h["val/nll"] for h in resumed.history] == [h["val/nll"] for h in straight.history]


def test_early_stopping_keeps_the_best_average(dm):
    stopper = EarlyStopping(patience=50, restore_best_weights=True)
    t = fit(dm, [WeightAveraging(decay=0.9), stopper], max_epochs=3)
    best, _ = stopper.best_weights
    assert_same(t.params, best)
    probs, _ = t._evaluate_arrays(dm.val)
    labels = np.asarray(dm.val.label)
    nll = -np.mean(np.log(np.asarray(probs)[np.arange(len(labels)), labels]))
    assert nll == pytest.approx(stopper.best, rel=1e-5)


def test_each_ensemble_member_keeps_its_own_average(dm):
    ensemble, state = make_ensemble("simplenn", DEFAULT_LAYOUT, seeds=(1, 2), hidden=(16,), dropout=0.1)
    t = fit(dm, [WeightAveraging(decay=0.9)], max_epochs=2, model=(ensemble, state))
    first = arrays(t.params)[0]
    assert first.shape[0] == 2 and not np.allclose(first[0], first[1])
    assert_same(t.params, average_of(t.opt_state))


def test_an_optimizer_without_the_average_and_bad_decays_fail_clearly(dm):
    with pytest.raises(TrainingError, match="track_average"):
        fit(dm, [WeightAveraging()], optimizer=optax.adam(1e-3), max_epochs=1)
    chained = optax.inject_hyperparams(lambda learning_rate: optax.chain(optax.adam(learning_rate),
                                                                         track_average(0.9)))(learning_rate=1e-3)
    t = fit(dm, [WeightAveraging(decay=0.9)], optimizer=chained, max_epochs=1)
    assert_same(t.params, average_of(t.opt_state))
    for bad in (0.0, 1.0, 1.5, True, "0.9"):
        with pytest.raises(TrainingError, match="decay must be a number in"):
            WeightAveraging(decay=bad)
    with pytest.raises(TrainingError, match="at most one WeightAveraging"):
        Trainer(callbacks=[WeightAveraging(), WeightAveraging()])


def test_a_recipe_names_it_and_gets_an_optimizer_that_keeps_the_average(tmp_path):
    recipe = validate_recipe({"model": {"name": "simplenn"}, "callbacks": [{"WeightAveraging": {"decay": 0.99}}]})
    assert recipe.callbacks[0].name == "WeightAveraging" and recipe.callbacks[0].args == {"decay": 0.99}
    trainer = make_trainer(recipe, tmp_path, quiet=True)
    assert average_of(trainer.optimizer.init({"w": jnp.ones(2)})) is not None
    plain = make_trainer(validate_recipe({"model": {"name": "simplenn"}}), tmp_path, quiet=True)
    assert average_of(plain.optimizer.init({"w": jnp.ones(2)})) is None
