"""Pharmacogenomic calls as FHIR R4 Observations of the HL7 Genomics Reporting IG (v2.0.0, STU 2):
http://hl7.org/fhir/uv/genomics-reporting/STU2/ . Pure: builds resources, stores nothing.

Per gene whose diplotype was called (caller status ``called`` or ``outside_call``):

* two **haplotype** Observations (profile ``haplotype``, LOINC 84414-2 "Haplotype name"), one per allele;
* one **genotype** Observation (profile ``genotype``, LOINC 84413-4 "Genotype display name"), ``derivedFrom``
  the haplotypes, the gene in the ``gene-studied`` component (LOINC 48018-6, HGNC id);
* a **therapeutic-implication** Observation (profile ``therapeutic-implication``, code TbdCodes
  ``therapeutic-implication``) carrying the CPIC phenotype -- metaboliser status in the
  ``effect-medication-metabolism`` component (LOINC 53040-2), transporter function or VKORC1 sensitivity in
  ``associated-phenotype`` (LOINC 81259-4) -- ``derivedFrom`` the genotype; only when the phenotype is callable
  (:func:`medtwin.pharmaco.recommendations.callability`). An uncertain phenotype is never written as one.

Every Observation notes the allele-definition version, the CPIC table version and where the call came from
(VCF sha256). Ids are name-based (patient, VCF digest, gene, role), so storing the same report twice changes
nothing. Genes that could not be called get no Observation: the pgx twin version keeps why.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from medtwin.pharmaco.recommendations import callability
from medtwin.record.fhirtime import format_datetime
from medtwin.vocab.systems import LOINC

IG_VERSION = "2.0.0"
IG_CITATION = ("HL7 FHIR Genomics Reporting Implementation Guide v2.0.0 (STU 2), "
               "http://hl7.org/fhir/uv/genomics-reporting/STU2/")
_PROFILE = "http://hl7.org/fhir/uv/genomics-reporting/StructureDefinition/"
_TBD = "http://hl7.org/fhir/uv/genomics-reporting/CodeSystem/TbdCodes"
GENOTYPE, HAPLOTYPE, GENE_STUDIED = "84413-4", "84414-2", "48018-6"
EFFECT_ON_METABOLISM, ASSOCIATED_PHENOTYPE = "53040-2", "81259-4"
_HGNC_SYSTEM = "http://www.genenames.org/geneId"
_PHARMVAR = "http://www.pharmvar.org"
#: HGNC gene ids (genenames.org) of the genes medtwin calls
HGNC = {"ABCG2": "HGNC:74", "CYP2B6": "HGNC:2615", "CYP2C19": "HGNC:2621", "CYP2C9": "HGNC:2623",
        "CYP2D6": "HGNC:2625", "CYP3A5": "HGNC:2638", "CYP4F2": "HGNC:2645", "DPYD": "HGNC:3012",
        "NUDT15": "HGNC:23063", "SLCO1B1": "HGNC:10959", "TPMT": "HGNC:12014", "UGT1A1": "HGNC:12530",
        "VKORC1": "HGNC:23663"}
#: genes whose star alleles PharmVar names (coded with the PharmVar system; others as text)
_PHARMVAR_GENES = frozenset({"CYP2B6", "CYP2C19", "CYP2C9", "CYP2D6", "CYP3A5", "CYP4F2", "NUDT15"})
_NAMESPACE = uuid.UUID("8f7d3c52-1e0b-4f6a-9a3e-2c5b7d9e4a10")
_CALLED = frozenset({"called", "outside_call"})


def _id(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "|".join(parts)))


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def _gene_studied(gene: str) -> dict[str, Any]:
    value = _concept(_HGNC_SYSTEM, HGNC[gene], gene) if gene in HGNC else {"text": gene}
    return {"code": _concept(LOINC, GENE_STUDIED, "Gene studied [ID]"), "valueCodeableConcept": value}


def _named(gene: str, name: str) -> dict[str, Any]:
    """A haplotype or diplotype value: PharmVar-coded for PharmVar star alleles, text otherwise."""
    text = f"{gene} {name}"
    if gene in _PHARMVAR_GENES and all(part.strip().startswith("*") for part in name.split("/")):
        return {"coding": [{"system": _PHARMVAR, "code": f"{gene}{name.replace(' ', '')}", "display": text}],
                "text": text}
    return {"text": text}


def _base(profile: str, code: dict[str, Any], rid: str, patient_id: str, issued: datetime,
          note: str) -> dict[str, Any]:
    when = format_datetime(issued)
    return {
        "resourceType": "Observation", "id": rid, "meta": {"profile": [_PROFILE + profile]}, "status": "final",
        "category": [_concept("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory",
                              "Laboratory")],
        "code": code, "subject": {"reference": f"Patient/{patient_id}"}, "effectiveDateTime": when,
        "issued": when, "note": [{"text": note}],
    }


def _provenance_note(result: Any, definition_version: str, source: str) -> str:
    parts = [f"Called by medtwin from {source}",
             f"allele definitions {definition_version or getattr(result, 'definition_version', '') or 'unknown'}",
             f"phenotype table: {getattr(result, 'table_version', '') or 'n/a'}",
             f"caller status {getattr(result, 'status', 'called')}", f"profile per {IG_CITATION}"]
    if getattr(result, "activity_score", None) is not None:
        parts.insert(1, f"CPIC activity score {result.activity_score:g}")
    return "; ".join(parts) + "."


def gene_observations(result: Any, *, patient_id: str, issued: datetime, report_key: str,
                      definition_version: str = "", source: str = "a VCF") -> list[dict[str, Any]]:
    """The haplotype, genotype and (when callable) therapeutic-implication Observations of one gene result
    (a :class:`medtwin.pharmaco.pgx.GeneResult`); empty when the diplotype was not called."""
    gene, diplotype = str(result.gene), str(getattr(result, "diplotype", "unknown"))
    alleles = [a.strip() for a in diplotype.split("/")]
    if getattr(result, "status", "called") not in _CALLED or diplotype == "unknown" or len(alleles) != 2:
        return []
    note = _provenance_note(result, definition_version, source)
    key = (patient_id, report_key, gene)
    haplotypes = []
    for index, allele in enumerate(alleles):
        haplotype = _base("haplotype", _concept(LOINC, HAPLOTYPE, "Haplotype name"), _id(*key, f"haplotype{index}"),
                          patient_id, issued, note)
        haplotype["valueCodeableConcept"] = _named(gene, allele)
        haplotype["component"] = [_gene_studied(gene)]
        haplotypes.append(haplotype)
    genotype = _base("genotype", _concept(LOINC, GENOTYPE, "Genotype display name"), _id(*key, "genotype"),
                     patient_id, issued, note)
    genotype["valueCodeableConcept"] = _named(gene, diplotype)
    genotype["component"] = [_gene_studied(gene)]
    genotype["derivedFrom"] = [{"reference": f"Observation/{h['id']}"} for h in haplotypes]
    out = [*haplotypes, genotype]
    verdict = callability(result)
    if not verdict.callable:
        genotype["note"].append({"text": f"No phenotype recorded: {verdict.reason}."})
        return out
    phenotype = str(result.phenotype)
    implication = _base("therapeutic-implication", _concept(_TBD, "therapeutic-implication", "Therapeutic Implication"),
                        _id(*key, "phenotype"), patient_id, issued, note)
    slot = (_concept(LOINC, EFFECT_ON_METABOLISM, "Genetic variation's effect on drug metabolism")
            if "Metabolizer" in phenotype else _concept(LOINC, ASSOCIATED_PHENOTYPE, "Associated phenotype"))
    implication["component"] = [{"code": slot, "valueCodeableConcept": {"text": f"{gene} {phenotype}"}}]
    implication["derivedFrom"] = [{"reference": f"Observation/{genotype['id']}"}]
    out.append(implication)
    return out


def report_observations(genes: Mapping[str, Any], *, patient_id: str, issued: datetime, report_key: str,
                        definition_version: str = "", source: str = "a VCF") -> list[dict[str, Any]]:
    """:func:`gene_observations` for every gene of a PGx report, genes in name order."""
    out: list[dict[str, Any]] = []
    for gene in sorted(genes):
        out += gene_observations(genes[gene], patient_id=patient_id, issued=issued, report_key=report_key,
                                 definition_version=definition_version, source=source)
    return out


def transaction_bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A FHIR transaction Bundle writing ``resources`` by id (PUT): importing it twice stores them once."""
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{r['id']}", "resource": r,
         "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}
