from __future__ import annotations

import pytest

from medtwin.security import consent
from medtwin.store.database import Store


def test_newest_decision_wins_and_history_kept(store: Store, clock) -> None:  # type: ignore[no-untyped-def]
    with store.begin() as conn:
        assert consent.consenting_patients(conn) == frozenset()  # opt-in: nobody by default
        consent.record_consent(conn, "p1", "permit", "pat1", clock)
        consent.record_consent(conn, "p2", "permit", "pat2", clock)
        clock.advance(days=3)
        consent.record_consent(conn, "p2", "deny", "pat2", clock)
        assert consent.consenting_patients(conn) == {"p1"}
        assert consent.consenting_patients(conn, ["p2", "p3"]) == frozenset()
        hist = consent.history(conn, "p2")
        assert [h.decision for h in hist] == ["permit", "deny"]
        assert hist[1].recorded_at.day == 18
        with pytest.raises(consent.ConsentError, match="decision"):
            consent.record_consent(conn, "p1", "maybe", "x", clock)
        with pytest.raises(consent.ConsentError, match="purpose"):
            consent.record_consent(conn, "p1", "permit", "x", clock, purpose="marketing")
