"""The streaming VCF reader and the indel normalisation used to read PharmCAT's positions."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.pharmaco.errors import VcfError
from medtwin.pharmaco.pgx import build_vcf, call_pgx
from medtwin.pharmaco.pgx.definitions import Position, definition
from medtwin.pharmaco.pgx.genotypes import UNRECOGNISED, match_allele
from medtwin.pharmaco.vcf import VcfRecord, parse_gt, parse_record, read_vcf

HEADER = ("##fileformat=VCFv4.2\n##reference=GRCh38\n"
          "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n")


# ---- GT and record parsing -------------------------------------------------------------------------------

@given(st.lists(st.one_of(st.none(), st.integers(0, 4)), min_size=1, max_size=2), st.booleans(), st.integers(0, 4))
def test_gt_round_trip(alleles: list[int | None], phased: bool, n_alts: int) -> None:
    text = ("|" if phased else "/").join("." if a is None else str(a) for a in alleles)
    if any(a is not None and a > n_alts for a in alleles):
        with pytest.raises(VcfError, match="invalid GT"):
            parse_gt(text, 1 + n_alts, "here")
        return
    parsed, is_phased = parse_gt(text, 1 + n_alts, "here")
    assert list(parsed) == (alleles if alleles != [None] else [None, None])
    assert is_phased == (phased and len(alleles) == 2)


DNA = st.text("ACGT", min_size=1, max_size=6)


@given(st.sampled_from(["chr1", "22", "chrX"]), st.integers(1, 10**9), DNA, st.lists(DNA, min_size=1, max_size=3),
       st.integers(0, 3), st.integers(0, 3), st.booleans(), st.integers(1, 10**6))
def test_record_line_round_trip(chrom: str, pos: int, ref: str, alts: list[str], a: int, b: int, phased: bool,
                                ps: int) -> None:
    gt = f"{a}{'|' if phased else '/'}{b}"
    line = f"{chrom}\t{pos}\t.\t{ref}\t{','.join(alts)}\t.\tPASS\t.\tGT:PS\t{gt}:{ps}"
    if max(a, b) > len(alts):
        with pytest.raises(VcfError, match="line 9"):
            parse_record(line, 9, 10, "x.vcf line 9")
        return
    record = parse_record(line, 9, 10, "x.vcf line 9")
    assert (record.chrom, record.position, record.ref, record.alts) == (chrom.removeprefix("chr"), pos, ref, tuple(alts))
    assert record.allele_sequences() == ((ref, *alts)[a], (ref, *alts)[b])
    assert record.phase_set == (str(ps) if phased else None)


@given(st.text(min_size=1, max_size=8).filter(lambda s: not s.isdigit() and "\t" not in s and "\n" not in s))
def test_bad_pos_is_an_error_naming_the_line(pos: str) -> None:
    text = HEADER + f"chr1\t{pos}\t.\tA\tG\t.\tPASS\t.\tGT\t0/1\n"
    with pytest.raises(VcfError, match="line 4"):
        read_vcf(text, regions=[("1", 10, 20)], name="x.vcf")


# ---- indel normalisation ----------------------------------------------------------------------------------

@st.composite
def deletions(draw: st.DrawFn) -> tuple[str, int, int, int, int, int]:
    """A reference sequence, a deletion (start, length) and an equivalent placement with padding."""
    seq = draw(st.text(draw(st.sampled_from(["AT", "ACGT", "CA"])), min_size=12, max_size=30))
    k = draw(st.integers(1, 3))
    i = draw(st.integers(1, len(seq) - k - 4))
    hap = seq[:i] + seq[i + k:]
    same = [j for j in range(1, len(seq) - k - 3) if seq[:j] + seq[j + k:] == hap]
    j = draw(st.sampled_from(same))
    return seq, min(same), k, j, draw(st.integers(0, min(j - 1, 2))), draw(st.integers(0, 2))


@settings(max_examples=300)
@given(deletions())
def test_equivalent_deletions_match_the_left_aligned_definition(case: tuple[str, int, int, int, int, int]) -> None:
    seq, left, k, j, pad_left, pad_right = case
    # the definition: left-aligned, VCF anchor base before the deleted bases (1-based positions)
    position = Position(0, "1", left, None, seq[left - 1:left + k], (seq[left - 1],), "del")
    start = j - 1 - pad_left
    ref = seq[start:j + k + pad_right]
    alt = seq[start:j] + seq[j + k:j + k + pad_right]
    record = VcfRecord("1", start + 1, ref, (alt,), (0, 1), False)
    touches = start + 1 <= position.last + 1 and position.position <= start + len(ref)
    matched = match_allele(position, record, alt)
    if touches:
        assert matched == position.alts[0]
        assert match_allele(position, record, ref) == position.ref
    else:
        assert matched is None  # windows do not touch: not readable without the genome, reported missing


@st.composite
def insertions(draw: st.DrawFn) -> tuple[str, int, str, int, str, int]:
    """A reference, an insertion written left-aligned (anchor, inserted bases) and an equivalent placement."""
    seq = draw(st.text(draw(st.sampled_from(["AT", "ACGT", "CA"])), min_size=12, max_size=30))
    k = draw(st.integers(1, 4))
    i = draw(st.integers(1, len(seq) - 4))
    hap = seq[:i] + draw(st.text("ACGT", min_size=k, max_size=k)) + seq[i:]
    same = [j for j in range(1, len(seq) - 3) if hap[:j] == seq[:j] and hap[j + k:] == seq[j:]]
    left, j = min(same), draw(st.sampled_from(same))
    return seq, left, hap[left:left + k], j, hap[j:j + k], draw(st.integers(0, 2))


@settings(max_examples=300)
@given(insertions())
def test_equivalent_insertions_match_the_left_aligned_definition(case: tuple[str, int, str, int, str, int]) -> None:
    seq, left, inserted, j, inserted_here, pad = case
    anchor = seq[left - 1]
    position = Position(0, "1", left, None, anchor, (anchor + inserted,), "ins")
    ref = seq[j - 1:j + pad]
    record = VcfRecord("1", j, ref, (seq[j - 1] + inserted_here + seq[j:j + pad],), (0, 1), False)
    touches = j <= position.last + 1
    if touches:
        assert match_allele(position, record, record.alts[0]) == position.alts[0]
        assert match_allele(position, record, ref) == position.ref
    else:
        assert match_allele(position, record, record.alts[0]) is None  # windows apart: reported missing
    other = seq[j - 1] + "G" * (len(inserted) + 1) + seq[j:j + pad]  # one base longer: never the same
    assert match_allele(position, record, other) in (None, *[UNRECOGNISED + other])


@given(st.text("ACGT", min_size=10, max_size=20), st.integers(1, 5))
def test_a_longer_deletion_is_unrecognised(seq: str, i: int) -> None:
    position = Position(0, "1", i, None, seq[i - 1:i + 1], (seq[i - 1],), "del")
    record = VcfRecord("1", i, seq[i - 1:i + 3], (seq[i - 1],), (0, 1), False)  # deletes 3 bases, not 1
    assert str(match_allele(position, record, seq[i - 1])).startswith(UNRECOGNISED)  # lengths differ
    assert match_allele(position, record, seq[i - 1:i + 3]) == position.ref


def test_ugt1a1_ta_repeat_written_shifted_and_padded_is_read() -> None:
    ugt = definition("UGT1A1")
    ta = next(p for p in ugt.positions if len(p.ref) > 1)  # CAT > C, CATAT, CATATAT (TA6..TA9)
    vcf = build_vcf({"UGT1A1": "*1/*28"})
    line = next(x for x in vcf.splitlines() if f"\t{ta.position}\t" in x)
    shifted = "\t".join([f"chr{ta.chrom}", str(ta.position + 1), ".", "ATA", "ATATA", ".", "PASS", ".", "GT", "0/1"])
    # the same TA insertion one base to the right, padded with an extra base on the right
    result = call_pgx(vcf.replace(line, shifted)).genes["UGT1A1"]
    assert (result.status, result.diplotype) == ("called", "*1/*28")


# ---- streaming, gzip, gVCF, phase sets, samples -------------------------------------------------------------

def test_gzip_file_with_gvcf_reference_blocks(tmp_path: Path) -> None:
    cyp3a5 = definition("CYP3A5")
    star3 = next(p for p in cyp3a5.positions if p.rsid == "rs776746")
    lines = [HEADER.rstrip("\n")]
    first, last = cyp3a5.first - 5, cyp3a5.last + 5
    lines.append(f"chr7\t{first}\t.\tA\t<NON_REF>\t.\tPASS\tEND={star3.position - 1}\tGT\t0/0")
    lines.append(f"chr7\t{star3.position}\trs776746\t{star3.ref}\t{star3.alts[0]},<NON_REF>\t.\tPASS\t.\tGT\t1/1")
    lines.append(f"chr7\t{star3.position + 1}\t.\tA\t<NON_REF>\t.\tPASS\tEND={last}\tGT\t0/0")
    path = tmp_path / "sample.g.vcf.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    result = call_pgx(path).genes["CYP3A5"]
    assert (result.status, result.diplotype, result.phenotype) == ("called", "*3/*3", "Poor Metabolizer")
    assert result.missing_positions == []
    path.with_suffix("").write_text("\n".join(lines[:2]) + "\n")  # a block that stops before the positions
    assert call_pgx(path.with_suffix("")).genes["CYP3A5"].status in ("ambiguous", "no_data")


def test_phase_sets_are_respected() -> None:
    """Two phased blocks of CYP2C19 *4/*17 with different PS: the blocks' relative phase is unknown."""
    vcf = build_vcf({"CYP2C19": "*4/*17"}, phased=True)
    cyp2c19 = definition("CYP2C19")
    star17 = next(p.position for p in cyp2c19.positions if p.rsid == "rs12248560")
    one_block = call_pgx(vcf).genes["CYP2C19"]
    assert one_block.status == "called" and one_block.diplotype == "*4/*17"
    split = []
    for line in vcf.splitlines():
        if line.startswith("chr10\t"):
            ps = "1" if int(line.split("\t")[1]) == star17 else "2"
            line = line.replace("\tGT\t", "\tGT:PS\t") + f":{ps}"
        split.append(line)
    two_blocks = call_pgx("\n".join(split)).genes["CYP2C19"]
    assert two_blocks.status == "ambiguous"
    assert {c.diplotype for c in two_blocks.candidates} == {"*1/*4", "*4/*17"}


def test_errors_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.vcf"
    abcg2 = definition("ABCG2").positions[0]
    path.write_text(HEADER + f"chr4\t{abcg2.position}\t.\tG\tT\t.\tPASS\t.\tGT\t0/7\n")
    with pytest.raises(VcfError, match=r"bad\.vcf line 4.*invalid GT"):
        call_pgx(path)
    path.write_text("chr4\t1\t.\tG\tT\t.\tPASS\t.\tGT\t0/1\n")
    with pytest.raises(VcfError, match="line 1.*before the #CHROM"):
        call_pgx(path)
    path.write_text("##reference=hg19\n" + HEADER)
    with pytest.raises(VcfError, match=r"bad\.vcf line 1.*GRCh37"):
        call_pgx(path)


def test_only_needed_records_are_parsed() -> None:
    """A malformed record far from every pharmacogene is never parsed; the same record on a position is."""
    abcg2 = definition("ABCG2").positions[0]
    far = "chr4\t1000\t.\tG\tT\t.\tPASS\t.\tGT\tnonsense\n"
    assert read_vcf(HEADER + far, regions=[("4", abcg2.position, abcg2.position)]).overlapping == []
    near = far.replace("\t1000\t", f"\t{abcg2.position}\t")
    with pytest.raises(VcfError, match="invalid GT"):
        read_vcf(HEADER + near, regions=[("4", abcg2.position, abcg2.position)])


# ---- the numpy chunk scanner agrees with a line-by-line reading ----------------------------------------------

LINE = st.tuples(st.sampled_from(["chr1", "1", "chr10", "chr22", "chrX", "chrUn_KI270302v1", "22"]),
                 st.integers(1, 3000), st.booleans())


@settings(max_examples=200)
@given(st.lists(LINE, max_size=40), st.lists(st.tuples(st.sampled_from(["1", "10", "22"]), st.integers(1, 3000),
                                                      st.integers(0, 50)), min_size=1, max_size=5))
def test_chunk_scanner_picks_exactly_the_lines_near_a_region(lines: list[tuple[str, int, bool]],
                                                             regions: list[tuple[str, int, int]]) -> None:
    from medtwin.pharmaco.vcf import LOOKBACK, _Regions, scan_chunk

    spans = _Regions([(c, s, s + w) for c, s, w in regions])
    text = "".join(f"{c}\t{p}\t.\tA\tG\t.\tPASS\t{'END=' + str(p + 5) if end else '.'}\tGT\t0/1\n"
                   for c, p, end in lines)
    starts, ends, chosen = scan_chunk(text.encode(), spans)
    expected = set()
    for k, (c, p, end) in enumerate(lines):
        near = any(c.removeprefix("chr") == rc and s - LOOKBACK <= p <= s + w for rc, s, w in regions)
        if near or end:
            expected.add(k)
    assert set(chosen.tolist()) == expected
    assert len(ends) == len(lines)


def test_wrong_assembly_without_header_is_caught_by_ref_alleles(tmp_path: Path) -> None:
    """No ##reference line, but the REF alleles at the defining positions are not GRCh38's."""
    flip = {"A": "C", "C": "G", "G": "T", "T": "A"}
    lines = []
    for line in build_vcf({}).splitlines():
        fields = line.split("\t")
        if line.startswith("##reference"):
            continue
        if not line.startswith("#") and len(fields[3]) == 1:
            fields[3] = flip[fields[3]]
            fields[4] = ",".join(a for a in fields[4].split(",") if a != fields[3]) or "N"
        lines.append("\t".join(fields))
    path = tmp_path / "other_assembly.vcf"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(VcfError, match=r"other_assembly\.vcf line \d+.*REF disagrees with GRCh38"):
        call_pgx(path)
    one = build_vcf({}).splitlines()
    k = next(i for i, x in enumerate(one) if x.startswith("chr4\t"))
    fields = one[k].split("\t")
    fields[3], fields[4] = flip[fields[3]], "N"
    one[k] = "\t".join(fields)
    abcg2 = call_pgx("\n".join(one) + "\n").genes["ABCG2"]  # one odd position: missing, with the reason
    assert abcg2.status == "no_data" and "disagrees" in abcg2.warnings[1]
