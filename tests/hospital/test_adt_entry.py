"""What the census hands its journal: the whole decision (the journal seals text and reason), while the
entry's repr, which reaches logs and tracebacks, shows neither the message nor a reason that quotes it."""

from __future__ import annotations

from datetime import datetime

from medtwin.hospital.adt import CensusTracker, Entry

UNITS = ["ed_treatment", "ward"]
GARBLED = "MSH|^~\\&|EPIC|GEN|MEDTWIN|GEN|20261207180000||ADT^A01|C9|P|2.5\rPID|1||MRN-4711^^^GEN^MR||DOE^JANE\r?? DOE"


class KeepingJournal:
    """A journal that keeps what it is handed (the tracker's only use of it is ``record``)."""

    def __init__(self) -> None:
        self.kept: list[dict[str, object]] = []

    def record(self, kind: str, control_id: str, accepted: bool, text: str, time: datetime | None = None,
               patient: str | None = None, event: str | None = None, unit: str | None = None,
               field: str | None = None, reason: str | None = None) -> bool:
        self.kept.append({"control_id": control_id, "accepted": accepted, "text": text, "field": field,
                          "reason": reason})
        return True


def test_a_refusal_is_journalled_whole_and_its_repr_shows_neither_message_nor_reason() -> None:
    journal = KeepingJournal()
    tracker = CensusTracker(UNITS, journal=journal)
    outcome = tracker.handle(GARBLED)
    assert not outcome.accepted and outcome.field == "segment 3" and "?? DOE" in (outcome.reason or "")
    assert journal.kept == [{"control_id": "C9", "accepted": False, "text": GARBLED, "field": "segment 3",
                             "reason": outcome.reason}]
    entry = Entry("hl7v2", "C9", False, GARBLED, field="segment 3", reason=outcome.reason)
    shown = repr(entry)
    assert "C9" in shown and "segment 3" in shown
    assert "DOE" not in shown and "MRN-4711" not in shown
