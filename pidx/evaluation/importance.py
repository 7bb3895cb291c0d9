"""What a model uses: permutation feature importance and detector-group ablation."""

from __future__ import annotations

import numpy as np

from ..data.datamodule import TrackArrays


def masked_group(arrays: TrackArrays, layout, group_index: int) -> TrackArrays:
    """The arrays as if detector group `group_index` had not measured any track."""
    import jax.numpy as jnp

    group = layout.groups[group_index]
    a, b = layout.group_slices[group_index]
    x = arrays.features.at[:, a:b].set(group.missing_fill)
    mask = arrays.group_mask
    if group.flag is not None:
        flag_col = layout.feature_names.index(f"available_{group.name}")
        x = x.at[:, flag_col].set(0.0)
        mask = mask.at[:, group_index].set(False)
    return TrackArrays(x, jnp.asarray(mask), arrays.label, arrays.p)


def importance_and_ablation(predict, arrays: TrackArrays, layout, *, max_tracks: int = 20_000, repeats: int = 3,
                            seed: int = 0):
    """Permutation importance per feature (the mean accuracy drop over `repeats` shuffles, and its
    standard deviation, as scikit-learn's `permutation_importance`) and the accuracy with each
    detector group removed (on up to `max_tracks` test tracks; the shuffles on the first
    `max_tracks / repeats` of them, so the repeats cost what one pass over `max_tracks` would).

    Returns `(accuracy, importance, ablation, spread)`: feature → mean drop, group → accuracy
    (`"none"`: all groups), feature → standard deviation of the drop over the repeats.
    """
    import jax.numpy as jnp

    n = min(arrays.num_tracks, max_tracks)
    rows = np.sort(np.random.default_rng(seed).choice(arrays.num_tracks, n, replace=False))
    sub = TrackArrays(*(jnp.asarray(np.asarray(a)[rows]) for a in arrays))
    labels = np.asarray(sub.label)
    base = float(np.mean(predict(sub).argmax(1) == labels))
    # the repeats share the cost of one pass over max_tracks: each shuffles the first max_tracks / repeats tracks
    m = max(n // repeats, 1)
    perm = TrackArrays(*(a[:m] for a in sub))
    perm_base = float(np.mean(predict(perm).argmax(1) == labels[:m]))
    rng = np.random.default_rng(seed + 1)
    importance, spread = {}, {}
    x = np.asarray(perm.features)
    for j, name in enumerate(layout.feature_names):
        drops = []
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[:, j] = x[rng.permutation(m), j]
            predicted = predict(perm._replace(features=jnp.asarray(shuffled))).argmax(1)
            drops.append(perm_base - float(np.mean(predicted == labels[:m])))
        importance[name], spread[name] = float(np.mean(drops)), float(np.std(drops))
    ablation = {"none": base}
    for g, group in enumerate(layout.groups):
        ablation[group.name] = float(np.mean(predict(masked_group(sub, layout, g)).argmax(1) == labels))
    return base, importance, ablation, spread


__all__ = ["masked_group", "importance_and_ablation"]
