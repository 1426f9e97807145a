"""Hydra's config store: our stages' configs and the W&B callback, registered in a scope.

Hydra composes and launches from one global store per process; what a project puts there
is taken out again when it is done, so that a second project opened in the same process
(a notebook, a test, a benchmark) never composes or launches with the first one's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from pipeline.spec import StageSpec


@contextlib.contextmanager
def registered(specs: Iterable[StageSpec]) -> Iterator[None]:
    """The stages' configs and the W&B callback in Hydra's store while the block runs."""
    listed = list(specs)

    def put() -> None:
        register_stages(listed)
        register_callback()

    with scope(put):
        yield


_Key = tuple[str, ...]  # a config's place in the store: folders, then its file name


@contextlib.contextmanager
def scope(*puts: Callable[[], None]) -> Iterator[None]:
    """Hydra's config store with what ``puts`` register in it, while the block runs.

    Hydra's store is one global of the process: each entry they add or replace is put
    back as it was at the end, so that a second project opened in the same process (a
    notebook, a test, a benchmark) never composes or launches with the first one's
    stages or callback options. What Hydra itself registers meanwhile (its plugins'
    configs, when first imported) stays.
    """
    import hydra.conf  # noqa: F401  Hydra's own configs are in the store before ours
    import hydra_zen  # noqa: F401
    from hydra.core.config_store import ConfigStore

    repo = ConfigStore.instance().repo
    before = _leaves(repo)
    folders = set(_folders(repo))
    ours: dict[_Key, Any] = {}
    try:
        try:
            for put in puts:
                put()
        finally:  # what the puts added or replaced, even if one of them failed half-way
            ours = {k: before.get(k) for k, n in _leaves(repo).items() if before.get(k) is not n}
        yield
    finally:
        for path, old in ours.items():
            folder = repo
            for part in path[:-1]:
                folder = folder.setdefault(part, {})
            if old is None:
                folder.pop(path[-1], None)
            else:
                folder[path[-1]] = old
        for path in sorted(set(_folders(repo)) - folders, key=len, reverse=True):
            parent = repo
            for part in path[:-1]:
                parent = parent[part]
            if not parent[path[-1]]:
                del parent[path[-1]]


def _leaves(folder: Mapping[str, Any], path: _Key = ()) -> dict[_Key, Any]:
    """Every config in the store's folders, by its place."""
    found: dict[_Key, Any] = {}
    for key, value in folder.items():
        if isinstance(value, dict):
            found.update(_leaves(value, (*path, key)))
        else:
            found[(*path, key)] = value
    return found


def _folders(folder: Mapping[str, Any], path: _Key = ()) -> Iterator[_Key]:
    for key, value in folder.items():
        if isinstance(value, dict):
            yield (*path, key)
            yield from _folders(value, (*path, key))


def register_stages(specs: Iterable[StageSpec]) -> None:
    """Put each stage's config and group options into Hydra's config store.

    Inside a :func:`scope`, unless the process composes nothing else.
    """
    from hydra_zen import ZenStore

    store = ZenStore(name="lineage", overwrite_ok=True)
    for spec in specs:
        store(spec.config, name=spec.name)
        for group, options in spec.groups.items():
            for option, conf in options.items():
                store(conf, group=group, name=option)
    store.add_to_hydra_store(overwrite_ok=True)


def register_callback() -> None:
    """Put the callback into Hydra's own config, so every stage job is tracked."""
    from hydra.conf import HydraConf
    from hydra_zen import ZenStore, builds

    store = ZenStore(name="lineage-hydra", overwrite_ok=True)
    from pipeline.execution.callback import WandbCallback

    tracked = builds(WandbCallback, populate_full_signature=True)
    store(HydraConf(callbacks={"wandb": tracked}))
    store.add_to_hydra_store(overwrite_ok=True)
