"""A strict, streaming VCF 4.x reader for pharmacogene positions.

Only what genotype calling needs: header checks (assembly), sample selection, and GT/PS of the records that
overlap the requested regions. Lines outside the regions are skipped after reading CHROM and POS only, so a
whole-genome VCF (plain or gzip) streams in seconds. gVCF reference blocks (``END=`` in INFO) that cover a
requested position are kept. Any malformed line that is read is an error naming the file and line number; a
GRCh37/hg19 file is rejected.
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from medtwin.pharmaco.errors import VcfError

_GRCH37_MARKERS = ("grch37", "hg19", "b37", "hs37", "human_g1k_v37", "ncbi37")
_GRCH38_MARKERS = ("grch38", "hg38", "b38", "hs38")
#: contig lengths that differ between assemblies (chr10, chr12, chr16, chr22)
_GRCH37_LENGTHS = {"10": 135534747, "12": 133851895, "16": 90354753, "22": 51304566}
_GRCH38_LENGTHS = {"10": 133797422, "12": 133275309, "16": 90338345, "22": 50818468}
_CONTIG = re.compile(r"^##contig=<(.*)>$")
_REF = re.compile(r"[ACGTN]+")
_ALT = re.compile(r"[ACGTN*]+|<[^>]+>|[ACGTN]*[\[\]].*")
_FIXED = ["CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]
#: how far before a requested position a record may start and still overlap it (longest REF we look back for)
LOOKBACK = 100
CHUNK_BYTES = 1 << 21
WHOLE_CHROMOSOME = "*"


@dataclass(frozen=True)
class VcfRecord:
    chrom: str
    position: int
    ref: str
    alts: tuple[str, ...]
    alleles: tuple[int | None, ...]  # indices into (ref, *alts); None for '.'
    phased: bool
    phase_set: str | None = None  # PS value; WHOLE_CHROMOSOME when phased without PS
    end: int | None = None  # last position of a gVCF reference block (INFO END=)
    line: int = 0

    def allele_sequences(self) -> tuple[str | None, ...]:
        seqs = (self.ref, *self.alts)
        return tuple(None if a is None else seqs[a] for a in self.alleles)

    @property
    def last(self) -> int:
        """Last reference position the record covers."""
        return max(self.end or 0, self.position + len(self.ref) - 1)

    @property
    def is_reference_block(self) -> bool:
        return self.end is not None and all(a == 0 for a in self.alleles)


@dataclass(frozen=True)
class VcfGenotypes:
    sample: str
    assembly: str  # "GRCh38" or "unspecified"
    records: dict[tuple[str, int], VcfRecord]
    overlapping: list[VcfRecord] = field(default_factory=list)
    lines: int = 0


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


def _check_contig(contig: dict[str, str], where: str) -> bool:
    """True if the contig line shows GRCh38; raises if it shows GRCh37."""
    declared = contig.get("assembly", "").lower()
    if any(m in declared for m in _GRCH37_MARKERS):
        raise VcfError(where, f"declares assembly {contig['assembly']}; GRCh38 is required")
    chrom = normalise_chrom(contig.get("id", ""))
    length = contig.get("length", "")
    if chrom in _GRCH37_LENGTHS and length.isdigit():
        if int(length) == _GRCH37_LENGTHS[chrom]:
            raise VcfError(where, f"chr{chrom} length {length} is GRCh37; GRCh38 is required")
        if int(length) == _GRCH38_LENGTHS[chrom]:
            return True
    return any(m in declared for m in _GRCH38_MARKERS)


def _assembly_from_header(lines: list[str], name: str) -> str:
    assembly = "unspecified"
    for i, line in enumerate(lines, start=1):
        low = line.lower()
        where = f"{name} line {i}"
        if low.startswith("##reference=") or low.startswith("##assembly="):
            value = low.split("=", 1)[1]
            if any(m in value for m in _GRCH37_MARKERS):
                raise VcfError(where, f"declares GRCh37/hg19 ({line.strip()}); GRCh38 is required")
            if any(m in value for m in _GRCH38_MARKERS):
                assembly = "GRCh38"
        contig = _parse_contig(line) if low.startswith("##contig=") else {}
        if contig and _check_contig(contig, where):
            assembly = "GRCh38"
    return assembly


def parse_gt(text: str, n_alleles: int, where: str) -> tuple[tuple[int | None, ...], bool]:
    """GT text -> (allele indices or None, phased). Raises naming ``where`` on a malformed GT."""
    if text in (".", ""):
        return (None, None), False
    phased = "|" in text
    alleles: list[int | None] = []
    for p in re.split(r"[|/]", text):
        if p == ".":
            alleles.append(None)
        elif p.isdigit() and int(p) < n_alleles:
            alleles.append(int(p))
        else:
            raise VcfError(where, f"invalid GT {text!r}")
    if len(alleles) not in (1, 2):
        raise VcfError(where, f"GT {text!r} is neither haploid nor diploid")
    return tuple(alleles), phased and len(alleles) == 2


def _info_end(info: str, where: str) -> int | None:
    for item in info.split(";"):
        if item.startswith("END="):
            value = item[4:]
            if not value.isdigit():
                raise VcfError(where, f"INFO END={value!r} is not a position")
            return int(value)
    return None


def parse_record(line: str, column: int, n_columns: int, where: str, number: int = 0) -> VcfRecord:
    """One VCF data line -> the record of the sample in ``column``; errors name ``where``."""
    fields = line.split("\t")
    if len(fields) != n_columns:
        raise VcfError(where, f"expected {n_columns} tab-separated columns, found {len(fields)}")
    chrom, pos_text, _id, ref, alt = fields[:5]
    if not pos_text.isdigit() or int(pos_text) < 1:
        raise VcfError(where, f"POS {pos_text!r} is not a positive integer")
    ref = ref.upper()
    if not _REF.fullmatch(ref):
        raise VcfError(where, f"REF {ref!r} is not a DNA sequence")
    alts = tuple(a.upper() for a in alt.split(",") if a != ".")
    if any(not _ALT.fullmatch(a) for a in alts):
        raise VcfError(where, f"ALT {alt!r} is not valid")
    fmt = fields[8].split(":")
    if "GT" not in fmt:
        raise VcfError(where, "FORMAT has no GT field")
    values = fields[column].split(":")
    gt_at = fmt.index("GT")
    alleles, phased = parse_gt(values[gt_at] if gt_at < len(values) else ".", 1 + len(alts), where)
    phase_set = None
    if phased:
        ps_at = fmt.index("PS") if "PS" in fmt else -1
        ps = values[ps_at] if 0 <= ps_at < len(values) else "."
        phase_set = WHOLE_CHROMOSOME if ps in (".", "") else ps
    end = _info_end(fields[7], where) if "END=" in fields[7] else None
    return VcfRecord(normalise_chrom(chrom), int(pos_text), ref, alts, alleles, phased, phase_set, end, number)


def chrom_code(name: bytes) -> int:
    """The first 8 bytes of a chromosome name packed into an integer (0-padded); names are at most 8 bytes."""
    return int.from_bytes(name[:8].ljust(8, b"\0"), "big")


class _Regions:
    """Merged regions per chromosome ('chrN' and 'N' spellings), as numpy arrays keyed by packed name."""

    def __init__(self, regions: Iterable[tuple[str, int, int]]) -> None:
        merged: dict[str, list[list[int]]] = {}
        for chrom, start, end in sorted((normalise_chrom(c), s, e) for c, s, e in regions):
            spans = merged.setdefault(chrom, [])
            if spans and start - LOOKBACK <= spans[-1][1] + 1:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        self.by_code: dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = {}
        self.by_chrom: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = {}
        for chrom, spans in merged.items():
            arrays = (np.array([s - LOOKBACK for s, _ in spans], dtype=np.int64),
                      np.array([e for _, e in spans], dtype=np.int64))
            self.by_chrom[chrom] = arrays
            for spelling in (chrom, f"chr{chrom}"):
                if len(spelling) <= 8:
                    self.by_code[chrom_code(spelling.encode())] = arrays

    def overlaps(self, record: VcfRecord) -> bool:
        spans = self.by_chrom.get(record.chrom)
        if spans is None:
            return False
        i = int(np.searchsorted(spans[0], record.last, side="right")) - 1
        return i >= 0 and record.position <= int(spans[1][i])


def _column_ints(arr: npt.NDArray[np.uint8], first: npt.NDArray[np.int64], length: npt.NDArray[np.int64],
                 width: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Decimal integers of ``length`` digits from ``first`` (vectorised); and which were not all digits."""
    value = np.zeros(first.size, dtype=np.int64)
    bad = np.zeros(first.size, dtype=np.bool_)
    last = arr.size - 1
    for k in range(width):
        active = k < length
        digit = arr[np.minimum(first + k, last)].astype(np.int64) - 48
        bad |= active & ((digit < 0) | (digit > 9))
        value = np.where(active, value * 10 + digit, value)
    return value, bad


def _codes(arr: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], length: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    code = np.zeros(starts.size, dtype=np.uint64)
    last = arr.size - 1
    for k in range(8):
        byte = np.where(k < length, arr[np.minimum(starts + k, last)], 0).astype(np.uint64)
        code = code * np.uint64(256) + byte
    return code


def scan_chunk(chunk: bytes, spans: _Regions | None) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64],
                                                               npt.NDArray[np.int64]]:
    """Line starts, line ends and the indices of the lines to parse in a chunk of whole lines.

    CHROM and POS of every line are read with numpy; a line is chosen when it lies in a region (or starts up to
    LOOKBACK bases before one), when it has INFO END= (a gVCF block that may cover a region), or when CHROM/POS
    are malformed (so that parsing it reports the line).
    """
    arr = np.frombuffer(chunk, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10).astype(np.int64)
    if not ends.size:
        return ends, ends, ends
    starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
    first = arr[np.minimum(starts, arr.size - 1)]
    data = (ends > starts) & (first != ord("#")) & (first != 13)
    if spans is None:
        return starts, ends, np.flatnonzero(data)
    tabs = np.flatnonzero(arr == 9).astype(np.int64)
    tabs = np.concatenate((tabs, [arr.size, arr.size]))
    i1 = np.searchsorted(tabs, starts)
    t1, t2 = tabs[i1], tabs[np.minimum(i1 + 1, tabs.size - 1)]
    bad = t2 >= ends
    pos, bad_digits = _column_ints(arr, t1 + 1, t2 - t1 - 1, 10)
    bad |= bad_digits | (t2 - t1 - 1 < 1) | (t2 - t1 - 1 > 10)
    length = t1 - starts
    code = _codes(arr, starts, length)
    hit = np.zeros(starts.size, dtype=np.bool_)
    for key, (low, high) in spans.by_code.items():
        mine = np.flatnonzero((code == np.uint64(key)) & (length <= 8))
        if mine.size:
            i = np.searchsorted(low, pos[mine], side="right") - 1
            hit[mine[(i >= 0) & (pos[mine] <= high[np.maximum(i, 0)])]] = True
    if b"END=" in chunk:
        at = np.array([m.start() for m in re.finditer(rb"END=", chunk)], dtype=np.int64)
        hit[np.searchsorted(ends, at)] = True
    return starts, ends, np.flatnonzero(data & (hit | bad))


@contextmanager
def _binary(source: str | Path | Iterable[str] | Iterable[bytes]) -> Iterator[BinaryIO]:
    """A binary stream of the VCF: a plain or gzip file (by its magic bytes), text, or lines."""
    if isinstance(source, Path):
        with source.open("rb") as probe:
            magic = probe.read(2)
        if magic == b"\x1f\x8b":
            with gzip.open(source, "rb") as zipped:
                yield zipped  # type: ignore[misc]
        else:
            with source.open("rb") as plain:
                yield plain
        return
    if isinstance(source, str):
        yield io.BytesIO(source.encode("utf-8"))
        return
    lines = (x.encode("utf-8") if isinstance(x, str) else x for x in source)
    yield io.BytesIO(b"".join(x.rstrip(b"\r\n") + b"\n" for x in lines))


class _Header:
    def __init__(self, name: str) -> None:
        self.name = name
        self.meta: list[str] = []
        self.columns: list[str] = []
        self.column = -1
        self.sample = ""
        self.assembly = "unspecified"

    def read(self, line: str, number: int, sample: str | None) -> None:
        self.columns = line[1:].split("\t")
        self.assembly = _assembly_from_header(self.meta, self.name)
        where = f"{self.name} line {number}"
        if self.columns[:8] != _FIXED:
            raise VcfError(where, "header must start with the 8 fixed VCF columns, tab-separated")
        if len(self.columns) < 10 or self.columns[8] != "FORMAT":
            raise VcfError(where, "the VCF has no FORMAT/sample columns, so no genotypes")
        samples = self.columns[9:]
        if sample is None:
            if len(samples) != 1:
                raise VcfError(f"{where} (sample)", f"the VCF has {len(samples)} samples ({', '.join(samples)}); "
                                                    "choose one")
            self.sample = samples[0]
        elif sample not in samples:
            raise VcfError(f"{where} (sample)", f"sample {sample!r} is not in the VCF (samples: {', '.join(samples)})")
        else:
            self.sample = sample
        self.column = 9 + samples.index(self.sample)


def read_vcf(
    source: str | Path | Iterable[str] | Iterable[bytes],
    sample: str | None = None,
    positions: set[tuple[str, int]] | None = None,
    regions: Iterable[tuple[str, int, int]] | None = None,
    name: str = "VCF",
) -> VcfGenotypes:
    """Stream a VCF (text, lines, or a path to a plain or gzip file) and keep the chosen sample's records that
    overlap ``regions`` ((chrom, first, last), 1-based inclusive) or ``positions`` ((chrom, pos)); all if neither.
    """
    wanted = list(regions or []) + [(c, p, p) for c, p in (positions or set())]
    spans = _Regions(wanted) if (regions is not None or positions is not None) else None
    header = _Header(name)
    records: dict[tuple[str, int], VcfRecord] = {}
    overlapping: list[VcfRecord] = []
    with _binary(source) as handle:
        number = _read_header(handle, header, sample)
        for line, number_of_line in _data_lines(handle, spans, number, name):
            record = parse_record(line, header.column, len(header.columns), f"{name} line {number_of_line}",
                                  number_of_line)
            if spans is None or spans.overlaps(record):
                overlapping.append(record)
                records.setdefault((record.chrom, record.position), record)
            number = max(number, number_of_line)
    return VcfGenotypes(sample=header.sample, assembly=header.assembly, records=records, overlapping=overlapping,
                        lines=number)


def _read_header(handle: BinaryIO, header: _Header, sample: str | None) -> int:
    for number, raw in enumerate(iter(handle.readline, b""), start=1):
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if line.startswith("##"):
            header.meta.append(line)
        elif line.startswith("#CHROM"):
            header.read(line, number, sample)
            return number
        elif line.strip():
            raise VcfError(f"{header.name} line {number}", "data before the #CHROM header line")
    raise VcfError(f"{header.name} header", "no #CHROM header line; is this a VCF?")


def _data_lines(handle: BinaryIO, spans: _Regions | None, number: int, name: str) -> Iterator[tuple[str, int]]:
    """(line text, line number) of the data lines that may overlap ``spans`` (all lines if None), read in
    chunks; malformed lines are always returned, so that parsing them raises an error naming the line."""
    rest = b""
    while True:
        block = handle.read(CHUNK_BYTES)
        data = rest + block
        if not block:
            chunk, rest = (data if data.endswith(b"\n") or not data else data + b"\n"), b""
        else:
            cut = data.rfind(b"\n")
            chunk, rest = data[:cut + 1], data[cut + 1:]
        if chunk:
            starts, ends, chosen = scan_chunk(chunk, spans)
            for k in chosen.tolist():
                yield chunk[starts[k]:ends[k]].decode("utf-8", errors="replace").rstrip("\r"), number + 1 + k
            number += len(ends)
        if not block:
            return
