import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from pidx.training.metrics import (
    balanced_accuracy, classification_metrics, confusion_matrix, efficiency_purity_vs_momentum, macro_auc, micro_auc,
)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 3000)
    logits = rng.normal(size=(3000, 4)) + 2.0 * np.eye(4)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probs


def test_against_scikit_learn(data):
    y, probs = data
    pred = probs.argmax(1)
    m = classification_metrics(y, probs)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["macro_auc"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    onehot = np.eye(4)[y]
    assert m["micro_auc"] == pytest.approx(skm.roc_auc_score(onehot, probs, average="micro"))
    precision, recall, f1, _ = skm.precision_recall_fscore_support(y, pred, labels=range(4))
    for c, name in enumerate(("pi", "ka", "pr", "el")):
        pc = m["per_class"][name]
        assert pc["efficiency"] == pytest.approx(recall[c]) and pc["purity"] == pytest.approx(precision[c])
        assert pc["f1"] == pytest.approx(f1[c])
        assert pc["auc"] == pytest.approx(skm.roc_auc_score(y == c, probs[:, c]))
    np.testing.assert_allclose(m["confusion_normalized"], skm.confusion_matrix(y, pred, normalize="true"), atol=1e-6)


def test_known_small_case_and_unidentified():
    y = np.array([0, 0, 1, 1, 2, 3])
    pred = np.array([0, 1, 1, -1, 2, 0])  # one unidentified kaon
    assert balanced_accuracy(y, pred) == pytest.approx((0.5 + 0.5 + 1 + 0) / 4)
    cm = confusion_matrix(y, pred)
    np.testing.assert_allclose(cm[1], [0, 0.5, 0, 0])  # the unidentified one is in the row total only
    probs = np.eye(4)[np.maximum(pred, 0)]
    m = classification_metrics(y, probs, pred=pred)
    assert m["per_class"]["ka"]["efficiency"] == 0.5 and m["per_class"]["pi"]["purity"] == 0.5
    assert m["accuracy"] == pytest.approx(3 / 6)


def test_absent_class_left_out_of_macro_averages():
    y = np.array([0, 0, 1, 2, 2, 1])
    probs = np.eye(4)[y] * 0.7 + 0.075
    assert macro_auc(y, probs) == pytest.approx(1.0)
    assert classification_metrics(y, probs)["per_class"]["el"]["auc"] is None
    assert micro_auc(y, probs) == pytest.approx(1.0)


def test_efficiency_purity_in_momentum_bins():
    y = np.array([0, 0, 1, 1, 0, 1])
    pred = np.array([0, 1, 1, 1, 0, 0])
    p = np.array([0.5, 0.6, 0.55, 1.5, 1.6, 1.7])
    res = efficiency_purity_vs_momentum(y, pred, p, bins=[0.1, 1.0, 2.0])
    assert res["pi"]["efficiency"] == [0.5, 1.0] and res["pi"]["purity"] == [1.0, 0.5]
    assert res["ka"]["efficiency"] == [1.0, 0.5] and res["ka"]["purity"] == [0.5, 1.0]
    assert res["pr"]["efficiency"] == [None, None] and res["ka"]["n_true"] == [1, 2]
    assert res["pi"]["n_passed"] == [1, 1] and res["pi"]["n_selected"] == [1, 2]
    for sp in ("pi", "ka"):
        for key in ("efficiency", "purity"):
            for value, (low, high) in zip(res[sp][key], res[sp][f"{key}_interval"]):
                assert low <= value <= high
    assert res["pr"]["efficiency_interval"] == [[None, None], [None, None]]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 500), st.data())
def test_clopper_pearson_is_the_exact_binomial_interval(n, data):
    """Its ends are where the binomial tail probabilities equal (1 - 0.6827) / 2 (the definition), with
    the closed forms at k = 0 and k = n; it always holds k / n."""
    from scipy.stats import binom

    from pidx.training.metrics import clopper_pearson

    k = data.draw(st.integers(0, n))
    low, high = clopper_pearson(k, n)
    tail = (1 - 0.6827) / 2
    assert low <= k / n <= high
    if k == 0:
        assert low == 0.0 and high == pytest.approx(1 - tail ** (1 / n), rel=1e-9)
    else:
        assert binom.sf(k - 1, n, low) == pytest.approx(tail, rel=1e-6)  # P(X >= k | low) = tail
    if k == n:
        assert high == 1.0 and low == pytest.approx(tail ** (1 / n), rel=1e-9)
    else:
        assert binom.cdf(k, n, high) == pytest.approx(tail, rel=1e-6)  # P(X <= k | high) = tail
    assert clopper_pearson(0, 0) == (None, None)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 400), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_roc_auc_equals_sklearn_with_ties(n, levels, seed):
    from sklearn.metrics import roc_auc_score

    from pidx.training.metrics import _roc_auc

    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    y[0], y[1] = True, False  # both classes present
    score = np.round(rng.random(n) * levels) / levels  # few distinct values: many ties
    assert abs(_roc_auc(y, score) - roc_auc_score(y, score)) < 1e-12
