"""PharmCAT outside-call files: calls made elsewhere (e.g. CYP2D6 copy number and hybrids by a dedicated
caller) that replace the VCF-based call for their gene.

One call per line, tab-separated: ``gene``, then ``diplotype`` (e.g. ``*1/*4``, ``*1x2/*4``) or a phenotype,
optionally a phenotype and/or an activity score (PharmCAT's columns: gene, diplotype, phenotype, activity
score). Blank lines and lines starting with ``#`` are ignored. Errors name the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medtwin.pharmaco.errors import PharmacoInputError
from medtwin.pharmaco.pgx.definitions import GENES


@dataclass(frozen=True)
class OutsideCall:
    gene: str
    diplotype: str | None
    phenotype: str | None
    activity_score: float | None
    line: int


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _looks_like_diplotype(text: str) -> bool:
    return "/" in text or text.startswith("*")


def _parse_line(fields: list[str], where: str, number: int) -> OutsideCall:
    gene = fields[0].strip().upper()
    if gene not in GENES:
        raise PharmacoInputError(where, f"gene {fields[0]!r} is not one of {', '.join(GENES)}")
    rest = [f.strip() for f in fields[1:]]
    diplotype = phenotype = None
    score: float | None = None
    for i, value in enumerate(rest):
        if not value:
            continue
        if i == 0 and _looks_like_diplotype(value):
            diplotype = value
        elif _number(value) is not None and i > 0:
            score = _number(value)
        elif phenotype is None and _number(value) is None:
            phenotype = value
        else:
            raise PharmacoInputError(where, f"cannot read column {i + 2} ({value!r})")
    if diplotype is not None and len(diplotype.split("/")) != 2:
        raise PharmacoInputError(where, f"diplotype {diplotype!r} must look like '*1/*4'")
    if diplotype is None and phenotype is None and score is None:
        raise PharmacoInputError(where, "gives neither a diplotype, a phenotype nor an activity score")
    return OutsideCall(gene, diplotype, phenotype, score, number)


def parse_outside_calls(text: str, name: str = "outside calls") -> dict[str, OutsideCall]:
    calls: dict[str, OutsideCall] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{name} line {number}"
        call = _parse_line(line.rstrip("\r\n").split("\t"), where, number)
        if call.gene in calls:
            raise PharmacoInputError(where, f"second call for {call.gene} (first at line {calls[call.gene].line})")
        calls[call.gene] = call
    return calls


def read_outside_calls(path: Path) -> dict[str, OutsideCall]:
    if not path.is_file():
        raise PharmacoInputError(str(path), "outside-call file not found")
    return parse_outside_calls(path.read_text(encoding="utf-8"), name=str(path))
