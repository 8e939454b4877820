"""Namespaces and models are unique by, and looked up by, their case-folded name (the Hugging Face Hub's rule):
``ProductionTransformer-RAGE`` is found as ``productiontransformer-rage``, and shown as created.

The unique indexes on ``lower(name)`` (migration 0009) make these lookups indexed on SQLite and Postgres alike.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, bindparam, func

from registry.db.models import Model, Namespace
from registry.names import name_key


def namespace_named(name: str) -> ColumnElement[bool]:
    return func.lower(Namespace.name) == name_key(name)


def namespaces_named(names: Iterable[str]) -> ColumnElement[bool]:
    return func.lower(Namespace.name).in_([name_key(n) for n in names])


def model_named(name: str) -> ColumnElement[bool]:
    return func.lower(Model.name) == name_key(name)


def namespace_key_is(param: str) -> ColumnElement[bool]:
    """The namespace whose case-folded name is bound later as ``param`` (statements compiled once)."""
    return func.lower(Namespace.name) == bindparam(param)


def model_key_is(param: str) -> ColumnElement[bool]:
    return func.lower(Model.name) == bindparam(param)
