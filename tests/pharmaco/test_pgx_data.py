"""The shipped PGx data is exactly the conversion of PharmCAT's files, carries its notice, and is complete."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from tests.pharmaco.pgx_cases import SHARED, phenotype_rows

from medtwin.pharmaco.pgx.convert import convert_definitions, convert_phenotypes, dump
from medtwin.pharmaco.pgx.definitions import GENES, gene_definitions
from medtwin.pharmaco.pgx.phenotypes import phenotype_of

DATA = resources.files("medtwin.pharmaco").joinpath("data/pgx")
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/pgx-definitions")


@needs_shared
def test_shipped_definitions_are_the_conversion_of_pharmcat() -> None:
    assert DATA.joinpath("pharmcat_definitions.json").read_text(encoding="utf-8") == dump(convert_definitions(SHARED))
    assert DATA.joinpath("cpic_phenotype_tables.json").read_text(encoding="utf-8") == dump(convert_phenotypes(SHARED))


@needs_shared
@pytest.mark.parametrize("gene", [g for g in GENES if g not in ("CYP2D6", "CYP4F2")])
def test_every_row_of_pharmcats_diplotype_table_is_reproduced(gene: str) -> None:
    rows = phenotype_rows(gene)
    assert rows
    for key, expected in rows.items():
        names = [name for name, count in key for _ in range(count)]
        assert phenotype_of(gene, names[0], names[-1])[0] == expected, (gene, names)


def test_license_readme_and_versions_ship_with_the_data() -> None:
    assert "Mozilla Public License" in DATA.joinpath("LICENSE-MPL-2.0.txt").read_text(encoding="utf-8")
    readme = DATA.joinpath("README.md").read_text(encoding="utf-8")
    assert "5431bf1187e50383df7e7db18ef67b36fc8b562e" in readme and "MPL" in readme
    source = json.loads(DATA.joinpath("pharmcat_definitions.json").read_text(encoding="utf-8"))["source"]
    assert source["commit"] == "5431bf1187e50383df7e7db18ef67b36fc8b562e"
    assert set(gene_definitions()) == set(GENES)
    assert all(d.version and d.positions and d.alleles for d in gene_definitions().values())
