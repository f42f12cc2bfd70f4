"""One dose-text check (``MassText``) for every model field that holds a dose: the error names that field."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from medtwin.pharmaco.dosing import DoseEvent, Regimen
from medtwin.pharmaco.errors import DoseError


def _dose_error(model: type[BaseModel], **fields: object) -> DoseError:
    with pytest.raises(ValidationError) as info:
        model(**fields)
    error = info.value.errors()[0]["ctx"]["error"]
    assert isinstance(error, DoseError)
    return error


@pytest.mark.parametrize(("text", "says"), [("500", "has no unit"), ("5 kg", "not a mass unit"),
                                            ("lots", "cannot read dose")])
def test_each_dose_field_is_named_in_its_error(text: str, says: str) -> None:
    event = _dose_error(DoseEvent, time_h=0, amount=text)
    regimen = _dose_error(Regimen, dose=text, interval_h=12)
    assert (event.field, regimen.field) == ("amount", "dose")
    assert says in event.message and says in regimen.message


def test_valid_dose_text_is_kept_and_read_in_mg() -> None:
    assert DoseEvent(time_h=1, amount="1.5 g").amount_mg == 1500.0
    assert Regimen(dose="250 mcg", interval_h=8).dose_mg == pytest.approx(0.25)
