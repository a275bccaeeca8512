"""Remembering in the namespaces the operator granted (the `memory`
interface). Entries come back as dicts: id, content, meta, created_at,
updated_at; hits add a score. A namespace not granted raises `Denied`."""

import json

from . import _host
from .errors import Denied, Failed

_META = ("kind", "source", "task_id", "version", "platform")


def _errors(value):
    kind, message = _host.variant_message(value)
    if kind == "denied":
        return Denied(f"memory: {message}")
    return Failed(f"memory {kind}: {message}")


def _bindings():
    return _host.require("memory", "memory")


def _meta(m, meta: dict):
    unknown = set(meta) - set(_META) - {"tags", "extra"}
    if unknown:
        raise ValueError(f"memory meta: unknown {', '.join(sorted(unknown))}; it takes {', '.join(_META)}, tags, extra")
    extra = meta.get("extra")
    return m.Meta(
        **{k: meta.get(k) for k in _META},
        tags=list(meta.get("tags", ())),
        extra=None if extra is None else json.dumps(extra),
    )


def _filter(m, filter: dict):
    known = set(_META) | {"tags", "created_after", "created_before"}
    unknown = set(filter) - known
    if unknown:
        raise ValueError(f"memory filter: unknown {', '.join(sorted(unknown))}; it takes {', '.join(sorted(known))}")
    return m.Filter(
        **{k: filter.get(k) for k in _META},
        tags=list(filter.get("tags", ())),
        created_after=filter.get("created_after"),
        created_before=filter.get("created_before"),
    )


def _entry(e) -> dict:
    meta = {k: getattr(e.meta, k) for k in _META}
    meta["tags"] = list(e.meta.tags)
    meta["extra"] = None if e.meta.extra is None else json.loads(e.meta.extra)
    return {"id": e.id, "content": e.content, "meta": meta, "created_at": e.created_at, "updated_at": e.updated_at}


def store(namespace: str, content: str, **meta) -> str:
    """Stores `content` with metadata (kind, source, task_id, version,
    platform, tags, extra); returns its id."""
    m = _bindings()
    return _host.unwrap(lambda: m.store(namespace, content, _meta(m, meta)), _errors)


def search(namespace: str, query: str, *, top_k: int = 5, mode: str = "hybrid", **filter) -> list[dict]:
    """The best `top_k` entries for `query` by meaning (`vector`), words
    (`text`) or both (`hybrid`), filtered by metadata fields."""
    m = _bindings()
    search_mode = getattr(m.SearchMode, mode.upper(), None)
    if search_mode is None:
        raise ValueError(f"memory search mode {mode!r}: use vector, text or hybrid")
    hits = _host.unwrap(lambda: m.search(namespace, query, top_k, _filter(m, filter), search_mode), _errors)
    return [dict(_entry(h.entry), score=h.score) for h in hits]


def get(namespace: str, id: str) -> dict:
    m = _bindings()
    return _entry(_host.unwrap(lambda: m.get(namespace, id), _errors))


def delete(namespace: str, id: str) -> None:
    m = _bindings()
    _host.unwrap(lambda: m.delete(namespace, id), _errors)


def find(namespace: str, *, limit: int = 100, **filter) -> list[dict]:
    """Entries matching the metadata filter, newest first."""
    m = _bindings()
    return [_entry(e) for e in _host.unwrap(lambda: m.find(namespace, _filter(m, filter), limit), _errors)]
