"""Seeing an MC → data shift before correcting it: which detector group's inputs tell MC from data.

For each detector group a classifier (`pidx.training.reweight.domain_auc`: trained on half of each
sample, scored on the other half) tries to tell the MC tracks from the data tracks by that group's
model inputs and its availability alone; its ROC AUC is 0.5 when the group looks the same in both and grows with the mismodelling. The same on every
input together gives the overall AUC. Per input, the two-sample Kolmogorov–Smirnov distance and the
shift of the median (in units of the MC's spread) say which variable moved, over the tracks where its
group is present.
"""

from __future__ import annotations

import numpy as np

from ..training.reweight import domain_auc


def input_shift(mc_features, mc_mask, data_features, data_mask, layout, *, seed: int = 0,
                max_fit_tracks: int = 50_000) -> dict:
    """The shift between two samples of model inputs, per detector group and per input.

    **Arguments:**

    - `mc_features`, `mc_mask`: `[N, F]` preprocessed inputs and `[N, G]` group mask of the MC sample.
    - `data_features`, `data_mask`: the same of the data sample.
    - `layout`: the `FeatureLayout` both are in.
    - `seed`: the classifiers' seed; `max_fit_tracks`: tracks of each sample per classifier fit.

    **Returns:** `{"overall_auc", "groups": [...], "inputs": [...]}`; `groups` ranked by AUC, most
    mismodelled first, each `{group, auc, availability_mc, availability_data}`; `inputs` ranked by KS
    distance, each `{input, group, ks, median_shift}`.
    """
    from scipy.stats import ks_2samp

    xm, mm = np.asarray(mc_features, np.float32), np.asarray(mc_mask, bool)
    xd, md = np.asarray(data_features, np.float32), np.asarray(data_mask, bool)
    fit = dict(seed=seed, max_fit_tracks=max_fit_tracks)
    overall = domain_auc((xm, mm), (xd, md), **fit)
    groups, inputs = [], []
    names = layout.feature_names
    for g, (group, (a, b)) in enumerate(zip(layout.group_names, layout.group_slices)):
        auc = domain_auc((xm[:, a:b], mm[:, g:g + 1]), (xd[:, a:b], md[:, g:g + 1]), **fit)
        groups.append({"group": group, "auc": auc, "availability_mc": float(mm[:, g].mean()),
                       "availability_data": float(md[:, g].mean())})
        pm, pd_ = mm[:, g], md[:, g]
        if pm.sum() < 20 or pd_.sum() < 20:
            continue
        for j in range(a, b):
            u, v = xm[pm, j], xd[pd_, j]
            spread = np.subtract(*np.percentile(u, [84.13, 15.87])) / 2 or 1.0
            inputs.append({"input": names[j], "group": group, "ks": float(ks_2samp(u, v).statistic),
                           "median_shift": float((np.median(v) - np.median(u)) / spread)})
    groups.sort(key=lambda r: -r["auc"])
    inputs.sort(key=lambda r: -r["ks"])
    return {"overall_auc": overall, "groups": groups, "inputs": inputs,
            "tracks": {"mc": int(len(xm)), "data": int(len(xd))}}


def shift_markdown(shift: dict, *, top_inputs: int = 10) -> str:
    """The shift as Markdown: the groups ranked by how well their inputs tell MC from data, then the
    inputs that moved most."""
    lines = [f"MC vs data: a classifier on every input tells them apart with ROC AUC {shift['overall_auc']:.3f} "
             f"(0.5: indistinguishable) on {shift['tracks']['mc']:,} MC and {shift['tracks']['data']:,} data tracks.",
             "", "| group | AUC (its inputs alone) | present in MC | present in data |", "|---|---|---|---|"]
    lines += [f"| {r['group']} | {r['auc']:.3f} | {r['availability_mc']:.1%} | {r['availability_data']:.1%} |"
              for r in shift["groups"]]
    lines += ["", "| input | group | KS distance | median shift (MC σ) |", "|---|---|---|---|"]
    lines += [f"| {r['input']} | {r['group']} | {r['ks']:.3f} | {r['median_shift']:+.2f} |"
              for r in shift["inputs"][:top_inputs]]
    return "\n".join(lines) + "\n"


__all__ = ["input_shift", "shift_markdown"]
