"""The house error for bad input: a ``ValueError`` that names the offending field.

Packages subclass it (``News2InputError``, ``SettingError``, ``PharmacoInputError``, ``PhysiologyInputError``,
``SolverInputError``) so that a caller can
report any of them the same way: ``field`` says where, ``message`` what is wrong.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input; ``field`` names the offending field or item, ``message`` says what is wrong with it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
