"""Named track sources besides files: what `TrackDataModule(source=NAME)` reads.

The embedded simulator registers itself as `simulate` (`pidx.simulation`, imported with the
package), so the data layer reads simulated tracks without importing the simulator: the
simulator writes the layouts this layer defines, and sits above it.

A source is a callable `(config, *, track_layout, use_cache) -> (frame, file layout, description)`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import DataError

_SOURCES: dict[str, Callable] = {}


def register_source(name: str, provider: Callable) -> None:
    """Make `TrackDataModule(source=name)` read its tracks from `provider`."""
    _SOURCES[name] = provider


def named_source(name: str) -> Callable | None:
    """The provider registered as `name`, or None when `name` is not a named source (a path)."""
    return _SOURCES.get(name)


def read_named(name: str, config, *, track_layout: str, use_cache: bool):
    provider = named_source(name)
    if provider is None:
        raise DataError(f"no track source named {name!r}; named sources are {sorted(_SOURCES)}, or give a file")
    return provider(config, track_layout=track_layout, use_cache=use_cache)


__all__ = ["register_source", "named_source", "read_named"]
