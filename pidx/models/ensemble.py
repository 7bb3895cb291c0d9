"""Deep ensembles trained in one compiled program.

An `Ensemble` holds K members of one architecture *stacked*: every array leaf of
`members` has a leading axis of size K. The Trainer vmaps its train step over that
axis (models, optimizer states and BatchNorm states together), so K members cost one
program, not K runs. Member `i` uses seed `seeds[i]` for its initialisation, its
shuffling and its dropout, exactly as a single run with that seed would: member `i` of
a K-ensemble equals `Trainer(seed=seeds[i])` on `build_model(..., key=member_key(seeds[i]))`.

```python
ens, state = make_ensemble("fse_phase1", layout, seeds=(231, 232, 233, 234))
trainer.fit(ens, datamodule, state=state)   # validation, early stopping: on the mean probabilities
probs = trainer.predict_members(arrays)     # [K, N, 4]
```
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from .base import PIDModel, build_model


def member_key(seed: int):
    """The initialisation key of a model trained with `seed` (as `pidx.runs.make_model` uses)."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), 0)


class Ensemble(eqx.Module):
    """K stacked members of one architecture.

    **Arguments:**

    - `members`: a `PIDModel` whose array leaves carry a leading member axis.
    - `seeds`: one seed per member (initialisation, shuffling, dropout).
    """

    members: PIDModel
    seeds: tuple[int, ...] = eqx.field(static=True)

    @property
    def size(self) -> int:
        return len(self.seeds)

    @property
    def layout(self):
        return self.members.layout

    @property
    def num_classes(self) -> int:
        return self.members.num_classes

    def member(self, i: int, state: eqx.nn.State | None = None):
        """Member `i` as a plain model (and its state, if given)."""
        pick = lambda tree: jax.tree.map(lambda a: a[i] if eqx.is_array(a) else a, tree)  # noqa: E731
        return pick(self.members) if state is None else (pick(self.members), pick(state))


def make_ensemble(name: str, layout, *, seeds: Sequence[int], compile: bool = False,
                  **kwargs) -> tuple[Ensemble, eqx.nn.State]:
    """K members of model `name`, member `i` initialised from `member_key(seeds[i])`.

    **Arguments:**

    - `name`: a built-in model name or `module:Class` path (as `build_model`).
    - `layout`: the feature layout.
    - `seeds`: one seed per member (at least 2).
    - `compile`: initialise in one compiled program (see `build_model`).
    - `kwargs`: the model's parameters.
    """
    seeds = tuple(int(s) for s in seeds)
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"an ensemble needs at least 2 distinct seeds, got {seeds}")
    keys = jnp.stack([member_key(s) for s in seeds])
    build = eqx.filter_vmap(lambda k: build_model(name, layout, key=k, **kwargs))
    members, state = (eqx.filter_jit(build) if compile else build)(keys)
    return Ensemble(members, seeds), state


def is_ensemble(model) -> bool:
    return isinstance(model, Ensemble)


__all__ = ["Ensemble", "make_ensemble", "member_key", "is_ensemble"]
