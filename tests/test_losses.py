import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from pidx.training import CrossEntropy, FocalLoss, compute_class_weights


@pytest.fixture
def batch():
    key = jax.random.PRNGKey(0)
    logits = jax.random.normal(key, (64, 4)) * 3
    labels = jax.random.randint(jax.random.PRNGKey(1), (64,), 0, 4)
    return logits, labels


def test_focal_gamma0_alpha1_equals_cross_entropy(batch):
    logits, labels = batch
    w = jnp.array([1.0, 3.0, 0.5, 2.0])
    np.testing.assert_allclose(FocalLoss(gamma=0.0, alpha=1.0)(logits, labels, w),
                               CrossEntropy()(logits, labels, w), rtol=1e-6)
    grads = [jax.grad(lambda l: f(l, labels, w))(logits) for f in (FocalLoss(0.0, 1.0), CrossEntropy())]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5)


def test_cross_entropy_matches_manual(batch):
    logits, labels = batch
    logp = np.asarray(jax.nn.log_softmax(logits))
    expected = -np.mean(logp[np.arange(64), np.asarray(labels)])
    np.testing.assert_allclose(CrossEntropy()(logits, labels, jnp.ones(4)), expected, rtol=1e-6)


def test_focal_down_weights_easy_examples_and_per_class_alpha():
    labels = jnp.array([0, 0])
    easy, hard = jnp.array([[8.0, 0, 0, 0]]), jnp.array([[0.0, 0, 0, 0]])
    f = FocalLoss(gamma=2.0, alpha=1.0)
    ce = CrossEntropy()
    w = jnp.ones(4)
    assert f(easy, labels[:1], w) / ce(easy, labels[:1], w) < 1e-5
    np.testing.assert_allclose(f(hard, labels[:1], w) / ce(hard, labels[:1], w), 0.75**2, rtol=1e-6)
    per_class = FocalLoss(gamma=2.0, alpha=(0.1, 0.2, 0.3, 0.4))
    lg = jnp.zeros((4, 4))
    l_each = [float(per_class(lg[i:i + 1], jnp.array([i]), w)) for i in range(4)]
    np.testing.assert_allclose(np.array(l_each) / l_each[0], [1, 2, 3, 4], rtol=1e-6)


def test_stable_for_extreme_logits():
    logits = jnp.array([[1e4, -1e4, 0, 0], [-1e4, 1e4, 0, 0]])
    labels = jnp.array([1, 1])
    for loss in (FocalLoss(), CrossEntropy()):
        value, grad = jax.value_and_grad(lambda l: loss(l, labels, jnp.ones(4)))(logits)
        assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_class_weights_modes():
    counts = np.array([700, 50, 140, 110])
    y = np.repeat(np.arange(4), counts)
    np.testing.assert_allclose(compute_class_weights("balanced", counts),
                               compute_class_weight("balanced", classes=np.arange(4), y=y), rtol=1e-6)
    np.testing.assert_array_equal(compute_class_weights("none", counts), np.ones(4))
    np.testing.assert_array_equal(compute_class_weights([1, 2, 3, 4], counts), [1, 2, 3, 4])
    absent = compute_class_weights("balanced", np.array([10, 0, 10, 10]))
    assert absent[1] == 0 and np.allclose(absent[[0, 2, 3]], 1.0)
    with pytest.raises(ValueError, match="4 finite non-negative"):
        compute_class_weights([1, 2], counts)
    with pytest.raises(ValueError, match="'balanced'"):
        compute_class_weights("balance", counts)
    with pytest.raises(ValueError, match="alpha needs one value per class"):
        FocalLoss(alpha=(0.1, 0.2))
