"""Rebuild the search index of every stored resource from its stored content.

What ``record.indexing`` derives from a resource grows with the search (category tokens; each type's R4 date
parameter's own elements; ImagingStudy's series modality; a row for a code-less resource), and the rows are
written only when a resource is stored. A store filled before such a change would answer the changed
searches from the old rows: a confident wrong answer (a ``category`` search silently missing resources).
Alembic revision ``0008_search_index`` runs :func:`reindex` once on every store that predates it.

Why from the content: the index rows, and the ``category`` tokens, are a function of the resource alone, so
they are replaced outright (idempotent: a second run writes the same rows). The other tokens are kept:
``source-id`` tokens come from the input a resource was imported from, which the store does not hold.

When what ``record.indexing`` derives changes again, add a data revision that calls :func:`reindex` (a store
already past 0008 does not run it twice); it always rebuilds to the current definition.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, delete, insert, inspect, select

from medtwin.record.indexing import index_rows
from medtwin.record.prepare import categories_of
from medtwin.store.codec import Codec
from medtwin.store.records import category_rows
from medtwin.store.schema import resource_identifiers, resource_index, resources

__all__ = ["reindex"]


def _rows(pk: int, resource_type: str, patient_id: str | None, resource: dict[str, Any],
          codec: Codec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``resource_index`` rows and ``category`` tokens of one stored resource."""
    index = []
    for row in index_rows(resource):
        values = row._asdict()
        text = values.pop("value_text")
        index.append({"resource_pk": pk, "patient_id": patient_id, "resource_type": resource_type, **values,
                      "value_text": None if text is None else codec.seal(text.encode())})
    tokens = [{"resource_pk": p, "resource_type": t, "token": token, "kind": kind}
              for p, t, token, kind in category_rows(pk, resource_type, categories_of(resource), codec.blind)]
    return index, tokens


def reindex(connection: Connection, codec: Codec, *, chunk: int = 400) -> int:
    """Replace every resource's index rows and category tokens by those of its stored content, ``chunk``
    resources per statement; returns how many resources were reindexed. ``codec``: the store's own (the
    content is sealed with it and the tokens are its blinds)."""
    last, done = -1, 0
    # the columns the store has at the revision that runs this (0008 runs before 0009 adds ``chart_at``)
    present = {column["name"] for column in inspect(connection).get_columns("resource_index")}
    while True:
        stored = connection.execute(
            select(resources.c.pk, resources.c.resource_type, resources.c.patient_id, resources.c.content)
            .where(resources.c.pk > last).order_by(resources.c.pk).limit(chunk)).all()
        if not stored:
            return done
        last = int(stored[-1][0])
        pks = [int(row[0]) for row in stored]
        index: list[dict[str, Any]] = []
        tokens: list[dict[str, Any]] = []
        for pk, rtype, patient, content in stored:
            rows, categories = _rows(int(pk), str(rtype), None if patient is None else str(patient),
                                     orjson.loads(codec.open(content)), codec)
            index.extend({k: v for k, v in row.items() if k in present} for row in rows)
            tokens.extend(categories)
        connection.execute(delete(resource_index).where(resource_index.c.resource_pk.in_(pks)))
        connection.execute(delete(resource_identifiers).where(resource_identifiers.c.kind == "category",
                                                              resource_identifiers.c.resource_pk.in_(pks)))
        if index:
            connection.execute(insert(resource_index), index)
        if tokens:
            connection.execute(insert(resource_identifiers), tokens)
        done += len(stored)
