"""Every generated case (from PharmCAT's definition files) is called correctly, declared ambiguous with the
truth among its candidates, or declared not callable with a reason: 0 confident wrong calls."""

from __future__ import annotations

import pytest
from tests.pharmaco.pgx_cases import GENES, SHARED, cases, judge, run

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/pgx-definitions")


@pytest.mark.parametrize("gene", GENES)
def test_generated_cases_have_no_confident_wrong_call(gene: str) -> None:
    tally = run(gene)
    total = sum(v for k, v in tally.counts.items() if ":" not in k)
    print(f"\n{gene}: {total} cases, correct {tally.counts['correct']}, ambiguous {tally.counts['ambiguous']}, "
          f"not callable {tally.counts['not callable']}, wrong {tally.counts['wrong']}")
    assert tally.wrong == []
    assert total == len(cases(gene))
    # every phased pair of common alleles is resolved, and every novel variant is refused
    assert tally.counts["pair phased: correct"] == sum(1 for c in cases(gene) if c.kind == "pair phased")
    assert tally.counts["novel: wrong"] == 0
    assert tally.counts["with reference: correct"] >= 1


def test_judge_catches_a_confident_wrong_call() -> None:
    """The judge itself must be able to fail: a result naming the wrong diplotype is counted wrong."""
    from medtwin.pharmaco.pgx import call_pgx

    case = next(c for c in cases("CYP2C9") if c.kind == "with reference" and c.named == "*3")
    result = call_pgx(case.vcf).genes["CYP2C9"]
    assert judge(case, result)[0] == "correct"
    forged = result.model_copy(update={"diplotype": "*1/*2"})
    assert judge(case, forged)[0] == "wrong"
    forged = result.model_copy(update={"phenotype": "Normal Metabolizer"})
    assert judge(case, forged)[0] == "wrong"
