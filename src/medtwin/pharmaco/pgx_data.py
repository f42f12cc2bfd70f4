"""The pharmacogenomic data files shipped in ``medtwin.pharmaco``'s ``data/pgx``: one reader for the allele
definitions, the phenotype tables and the CPIC guideline files (outside :mod:`medtwin.pharmaco.pgx`, so that
:mod:`medtwin.pharmaco.recommendations`, which that package imports, can use it without an import circle)."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable


def data_folder() -> Traversable:
    return resources.files("medtwin.pharmaco").joinpath("data/pgx")


def data_text(name: str) -> str:
    return data_folder().joinpath(name).read_text(encoding="utf-8")
