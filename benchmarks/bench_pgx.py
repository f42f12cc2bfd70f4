"""Benchmark: call all 13 pharmacogenes from a whole-genome-sized VCF (5,000,000 records, gzip).

The VCF is generated with numpy (fixed-width records written as one byte matrix per chromosome, no Python
loop per record) into a temporary directory, with the defining positions of every gene (a known genotype,
written by ``build_vcf``) among random filler records on chr1-22. Then it is streamed and called by
``call_pgx`` (CHROM and POS read for every line; only records near a defining position are parsed), next to a
same-run baseline: a plain line-by-line parse of every record (split every line, read POS and GT), which is
what the reader did before. The call on the big file must equal the call on the pharmacogene lines alone.

Run: .venv/bin/python benchmarks/bench_pgx.py            (5,000,000 records; target <= 30 s)
     .venv/bin/python benchmarks/bench_pgx.py --smoke    (50,000 records)
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine  # noqa: E402

from medtwin.pharmaco.pgx import PgxReport, build_vcf, call_pgx  # noqa: E402
from medtwin.pharmaco.pgx.definitions import gene_definitions  # noqa: E402
from medtwin.pharmaco.vcf import parse_gt  # noqa: E402

GENOTYPE = {"CYP2D6": "*3/*4", "CYP2C9": "*1/*8", "CYP2C19": "*1/*17", "SLCO1B1": "*5/*15", "DPYD":
            "Reference/c.1905+1G>A (*2A)", "CYP3A5": "*3/*3", "TPMT": "*1/*3C", "UGT1A1": "*1/*28",
            "VKORC1": "G/A"}
MARGIN = 500


def _filler(chrom: str, n: int, digits: int, rng: np.random.Generator,
            avoid: list[tuple[int, int]]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """n sorted positions with ``digits`` digits (none near a pharmacogene) and their VCF lines as bytes."""
    low, high = 10 ** (digits - 1), 10**digits - 1
    pos = np.unique(rng.integers(low, high, size=int(n * 1.02)))
    for start, end in avoid:
        pos = pos[(pos < start - MARGIN) | (pos > end + MARGIN)]
    pos = np.sort(rng.choice(pos, size=min(n, pos.size), replace=False))
    head = f"chr{chrom}\t".encode()
    tail = b"\t.\tA\tG\t.\tPASS\t.\tGT\t0/0\n"
    width = len(head) + digits + len(tail)
    lines = np.empty((pos.size, width), dtype=np.uint8)
    lines[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    for k in range(digits):
        lines[:, len(head) + k] = 48 + (pos // 10 ** (digits - 1 - k)) % 10
    lines[:, len(head) + digits:] = np.frombuffer(tail, dtype=np.uint8)
    gt = rng.choice(np.array([48, 49], dtype=np.uint8), size=(pos.size, 2), p=[0.7, 0.3])
    lines[:, width - 4] = gt.min(axis=1)
    lines[:, width - 2] = gt.max(axis=1)
    return pos, lines


def write_genome(path: Path, n_records: int, seed: int = 14) -> str:
    """Write the gzip VCF; return the pharmacogene-only VCF text (the truth's input)."""
    rng = np.random.default_rng(seed)
    small = build_vcf(GENOTYPE, sample="NA00001")
    header = [line for line in small.splitlines() if line.startswith("#")]
    pgx_lines: dict[str, list[tuple[int, str]]] = {}
    for text in small.splitlines():
        if not text.startswith("#"):
            chrom, at = text.split("\t", 2)[:2]
            pgx_lines.setdefault(chrom.removeprefix("chr"), []).append((int(at), text + "\n"))
    regions: dict[str, list[tuple[int, int]]] = {}
    for d in gene_definitions().values():
        regions.setdefault(d.chrom, []).append((d.first, d.last))
    chroms = [str(c) for c in range(1, 23)]
    per_chrom = n_records // len(chroms)
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(("\n".join(header) + "\n").encode())
        for chrom in chroms:
            digits = 9 if any(end >= 10**8 for _, end in regions.get(chrom, [])) else 8
            pos, lines = _filler(chrom, per_chrom, digits, rng, regions.get(chrom, []))
            mine = sorted(pgx_lines.get(chrom, []))
            cuts = np.searchsorted(pos, [p for p, _ in mine]).tolist()
            start = 0
            for cut, (_, pgx_line) in zip(cuts, mine, strict=True):
                out.write(lines[start:cut].tobytes())
                out.write(pgx_line.encode())
                start = cut
            out.write(lines[start:].tobytes())
    return small


def naive_parse(path: Path, wanted: set[tuple[str, int]]) -> int:
    """Baseline: split every line and parse its GT, keep the wanted positions (the pre-issue-14 reader)."""
    kept = 0
    with gzip.open(path, "rt") as handle:
        for line in handle:
            if line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t")
            alleles, _ = parse_gt(fields[9].split(":")[0], 1 + len(fields[4].split(",")), "line")
            if (fields[0].removeprefix("chr"), int(fields[1])) in wanted and alleles:
                kept += 1
    return kept


def _summary(report: PgxReport) -> dict[str, tuple[str, str, str]]:
    return {g: (r.status, r.diplotype, r.phenotype) for g, r in report.genes.items()}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="50,000 records instead of 5,000,000")
    parser.add_argument("--records", type=int, default=None)
    args = parser.parse_args(argv)
    n = args.records or (50_000 if args.smoke else 5_000_000)
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "genome.vcf.gz"
        t0 = time.perf_counter()
        small = write_genome(path, n)
        generate_s = time.perf_counter() - t0
        size_mb = path.stat().st_size / 1e6
        print(f"generated {n:,} filler records + pharmacogene positions, {size_mb:.1f} MB gzip, in {generate_s:.1f} s")
        t0 = time.perf_counter()
        report = call_pgx(path)
        call_s = time.perf_counter() - t0
        truth = call_pgx(small)
        if _summary(report) != _summary(truth):
            raise SystemExit(f"call on the genome differs from the call on the pharmacogene lines:\n"
                             f"{_summary(report)}\n{_summary(truth)}")
        wanted = {(d.chrom, p.position) for d in gene_definitions().values() for p in d.positions}
        t0 = time.perf_counter()
        kept = naive_parse(path, wanted)
        naive_s = time.perf_counter() - t0
    print(f"call_pgx (stream, parse only needed records): {call_s:.2f} s for {n:,} records "
          f"({n / call_s / 1e6:.2f} M records/s); target <= 30 s at 5 M")
    print(f"baseline (parse every record's fields and GT): {naive_s:.2f} s ({kept} pharmacogene records kept); "
          f"ratio {naive_s / call_s:.1f}x")
    print("calls equal the pharmacogene-only VCF's: " + ", ".join(f"{g} {s[1]}" for g, s in _summary(report).items()
                                                                  if s[0] == "called"))
    return {"call_s": call_s, "naive_s": naive_s, "generate_s": generate_s}


if __name__ == "__main__":
    main()
