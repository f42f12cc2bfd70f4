"""A small, strict VCF 4.x reader for pharmacogene positions (single sample, GRCh38, phased or not).

Only what genotype calling needs: header checks (assembly), sample selection, and GT at the requested
positions. Any malformed data line is an error naming the line number; a GRCh37/hg19 file is rejected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from medtwin.pharmaco.errors import VcfError

_GRCH37_MARKERS = ("grch37", "hg19", "b37", "hs37", "human_g1k_v37", "ncbi37")
_GRCH38_MARKERS = ("grch38", "hg38", "b38", "hs38")
#: contig lengths that differ between assemblies (chr10, chr12, chr16, chr22)
_GRCH37_LENGTHS = {"10": 135534747, "12": 133851895, "16": 90354753, "22": 51304566}
_GRCH38_LENGTHS = {"10": 133797422, "12": 133275309, "16": 90338345, "22": 50818468}
_CONTIG = re.compile(r"^##contig=<(.*)>$")


@dataclass(frozen=True)
class VcfRecord:
    chrom: str
    position: int
    ref: str
    alts: tuple[str, ...]
    alleles: tuple[int | None, ...]  # indices into (ref, *alts); None for '.'
    phased: bool

    def allele_sequences(self) -> tuple[str | None, ...]:
        seqs = (self.ref, *self.alts)
        return tuple(None if a is None else seqs[a] for a in self.alleles)


@dataclass(frozen=True)
class VcfGenotypes:
    sample: str
    assembly: str  # "GRCh38" or "unspecified"
    records: dict[tuple[str, int], VcfRecord]


def normalise_chrom(chrom: str) -> str:
    c = chrom.strip()
    return c[3:] if c.lower().startswith("chr") else c


def _parse_contig(line: str) -> dict[str, str]:
    m = _CONTIG.match(line.strip())
    if not m:
        return {}
    out: dict[str, str] = {}
    for part in re.findall(r'(\w+)=("[^"]*"|[^,]*)', m.group(1)):
        out[part[0].lower()] = part[1].strip('"')
    return out


def _assembly_from_header(lines: list[str]) -> str:
    assembly = "unspecified"
    for i, line in enumerate(lines, start=1):
        low = line.lower()
        if low.startswith("##reference=") or low.startswith("##assembly="):
            value = low.split("=", 1)[1]
            if any(m in value for m in _GRCH37_MARKERS):
                raise VcfError("reference", f"header line {i} declares GRCh37/hg19 ({line.strip()}); GRCh38 is required")
            if any(m in value for m in _GRCH38_MARKERS):
                assembly = "GRCh38"
        contig = _parse_contig(line) if low.startswith("##contig=") else {}
        if contig:
            declared = contig.get("assembly", "").lower()
            if any(m in declared for m in _GRCH37_MARKERS):
                raise VcfError("contig", f"header line {i} declares assembly {contig['assembly']}; GRCh38 is required")
            if any(m in declared for m in _GRCH38_MARKERS):
                assembly = "GRCh38"
            chrom = normalise_chrom(contig.get("id", ""))
            length = contig.get("length", "")
            if chrom in _GRCH37_LENGTHS and length.isdigit():
                if int(length) == _GRCH37_LENGTHS[chrom]:
                    raise VcfError("contig", f"header line {i}: chr{chrom} length {length} is GRCh37; GRCh38 is required")
                if int(length) == _GRCH38_LENGTHS[chrom]:
                    assembly = "GRCh38"
    return assembly


def _parse_gt(text: str, n_alleles: int, where: str) -> tuple[tuple[int | None, ...], bool]:
    if text in (".", ""):
        return (None, None), False
    phased = "|" in text
    parts = re.split(r"[|/]", text)
    alleles: list[int | None] = []
    for p in parts:
        if p == ".":
            alleles.append(None)
        elif p.isdigit() and int(p) < n_alleles:
            alleles.append(int(p))
        else:
            raise VcfError(where, f"invalid GT {text!r}")
    if len(alleles) not in (1, 2):
        raise VcfError(where, f"GT {text!r} is neither haploid nor diploid")
    return tuple(alleles), phased and len(alleles) == 2


def read_vcf(
    text: str | Iterable[str], sample: str | None = None, positions: set[tuple[str, int]] | None = None
) -> VcfGenotypes:
    """Parse VCF text (or lines). ``positions`` limits which records are kept ((chrom without 'chr', pos))."""
    lines = text.splitlines() if isinstance(text, str) else [ln.rstrip("\n") for ln in text]
    meta: list[str] = []
    header: list[str] | None = None
    records: dict[tuple[str, int], VcfRecord] = {}
    column = -1
    assembly = "unspecified"
    chosen = ""
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r")
        if header is None:
            if line.startswith("##"):
                meta.append(line)
                continue
            if line.startswith("#CHROM"):
                header = line[1:].split("\t")
                assembly = _assembly_from_header(meta)
                if header[:8] != ["CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]:
                    raise VcfError(f"line {number}", "header must start with the 8 fixed VCF columns, tab-separated")
                if len(header) < 10 or header[8] != "FORMAT":
                    raise VcfError("sample", "the VCF has no FORMAT/sample columns, so no genotypes")
                samples = header[9:]
                if sample is None:
                    if len(samples) != 1:
                        raise VcfError("sample", f"the VCF has {len(samples)} samples ({', '.join(samples)}); choose one")
                    chosen = samples[0]
                elif sample not in samples:
                    raise VcfError("sample", f"sample {sample!r} is not in the VCF (samples: {', '.join(samples)})")
                else:
                    chosen = sample
                column = 9 + samples.index(chosen)
                continue
            if not line.strip():
                continue
            raise VcfError(f"line {number}", "data before the #CHROM header line")
        if not line.strip():
            continue
        fields = line.split("\t")
        where = f"line {number}"
        if len(fields) != len(header):
            raise VcfError(where, f"expected {len(header)} tab-separated columns, found {len(fields)}")
        chrom, pos_text, _id, ref, alt = fields[:5]
        if not pos_text.isdigit() or int(pos_text) < 1:
            raise VcfError(where, f"POS {pos_text!r} is not a positive integer")
        if not re.fullmatch(r"[ACGTNacgtn]+", ref):
            raise VcfError(where, f"REF {ref!r} is not a DNA sequence")
        alts = tuple(a for a in alt.split(",") if a != ".")
        if any(not re.fullmatch(r"[ACGTNacgtn*]+|<[^>]+>", a) for a in alts):
            raise VcfError(where, f"ALT {alt!r} is not valid")
        key = (normalise_chrom(chrom), int(pos_text))
        fmt = fields[8].split(":")
        if "GT" not in fmt:
            raise VcfError(where, "FORMAT has no GT field")
        values = fields[column].split(":")
        gt_text = values[fmt.index("GT")] if fmt.index("GT") < len(values) else "."
        alleles, phased = _parse_gt(gt_text, 1 + len(alts), where)
        if positions is not None and key not in positions:
            continue
        records[key] = VcfRecord(key[0], key[1], ref.upper(), tuple(a.upper() for a in alts), alleles, phased)
    if header is None:
        raise VcfError("header", "no #CHROM header line; is this a VCF?")
    return VcfGenotypes(sample=chosen, assembly=assembly, records=records)
