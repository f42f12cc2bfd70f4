"""Convert PharmCAT's allele-definition and phenotype JSON into the compact files shipped in
``pharmaco/data/pgx`` (only the fields the caller uses).

    python -m medtwin.pharmaco.pgx.convert ../shared/data/pgx-definitions src/medtwin/pharmaco/data/pgx

A test re-runs the conversion on the shared copy and compares it with the shipped files, so the shipped
data cannot drift from its source.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from medtwin.pharmaco.pgx.definitions import GENES

SOURCE = {
    "name": "PharmCAT (PharmGKB/ClinPGx) allele definitions and CPIC phenotype tables",
    "url": "https://github.com/PharmGKB/PharmCAT",
    "commit": "5431bf1187e50383df7e7db18ef67b36fc8b562e",
    "license": "MPL-2.0 (LICENSE-MPL-2.0.txt beside this file); content from PharmVar and CPIC",
}
DEFINITIONS_FILE = "pharmcat_definitions.json"
PHENOTYPES_FILE = "cpic_phenotype_tables.json"
_EXEMPTION_KEYS = ("requiredPositions", "ignoredAlleles", "unphasedDiplotypePriorities")


def _gene_definition(doc: dict[str, Any]) -> dict[str, Any]:
    variants = doc["variants"]
    positions = [[v["position"], v["rsid"], v["ref"], list(v["alts"]), v["chromosomeHgvsName"]] for v in variants]
    alleles: list[list[Any]] = []
    reference = ""
    for named in doc["namedAlleles"]:
        defs = {str(i): a for i, a in enumerate(named["alleles"]) if a is not None}
        if named["reference"]:  # written in full; keep only where it is not the VCF REF (IUPAC codes in CYP2D6 *1)
            reference = named["name"]
            defs = {i: a for i, a in defs.items() if a != variants[int(i)]["ref"]}
        alleles.append([named["name"], defs])
    return {"chromosome": doc["chromosome"], "genome_build": doc["genomeBuild"], "version": doc["version"],
            "reference": reference, "positions": positions, "alleles": alleles}


def _exemption(raw: dict[str, Any]) -> dict[str, Any]:
    out = {key: raw[key] for key in _EXEMPTION_KEYS if raw.get(key)}
    if raw.get("ignoredPositions"):
        out["ignoredPositions"] = [p["position"] for p in raw["ignoredPositions"]]
    if raw.get("extraPositions"):
        out["extraPositions"] = [[p["position"], p["rsid"], p["ref"], list(p["alts"])] for p in raw["extraPositions"]]
    return out


def convert_definitions(source: Path) -> dict[str, Any]:
    exemptions = json.loads((source / "alleles" / "exemptions.json").read_text(encoding="utf-8"))
    genes = {}
    for gene in GENES:
        doc = json.loads((source / "alleles" / f"{gene}_translation.json").read_text(encoding="utf-8"))
        entry = _gene_definition(doc)
        entry["exemptions"] = _exemption(exemptions.get(gene, {}))
        genes[gene] = entry
    return {"source": SOURCE, "genes": genes}


def _lookup(doc: dict[str, Any], activity: bool) -> dict[str, str]:
    key = {a["name"]: a["lookupKey"] for a in doc["namedAlleles"]}
    table: dict[str, str] = {}
    for row in doc["diplotypes"]:
        names = [n for n, count in row["diplotypekey"].items() for _ in range(count)]
        k = row["lookupkey"] if activity else "|".join(sorted(key[n] for n in names))
        if table.setdefault(k, row["generesult"]) != row["generesult"]:
            raise ValueError(f"{doc['gene']}: lookup {k} maps to two phenotypes")
    return table


def convert_phenotypes(source: Path) -> dict[str, Any]:
    genes = {}
    for gene in GENES:
        path = source / "phenotypes" / f"{gene}.json"
        if not path.is_file():
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        activity = gene in ("CYP2C9", "DPYD")
        genes[gene] = {
            "version": doc["version"],
            "method": "activity_score" if activity else "function_pair",
            "alleles": {a["name"]: [a["functionValue"], a["activityValue"]] for a in doc["namedAlleles"]},
            "lookup": _lookup(doc, activity),
        }
    return {"source": SOURCE, "genes": genes}


def dump(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    source, target = Path(argv[0]), Path(argv[1])
    (target / DEFINITIONS_FILE).write_text(dump(convert_definitions(source)), encoding="utf-8")
    (target / PHENOTYPES_FILE).write_text(dump(convert_phenotypes(source)), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
