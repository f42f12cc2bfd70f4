"""The model framework's input error: a :class:`PhysiologyInputError` (so the API answers it as a
problem+json 422 naming the field, like every model input error)."""

from __future__ import annotations

from medtwin.physiology.errors import PhysiologyInputError


class ModelInputError(PhysiologyInputError):
    """Bad input to a generic model operation; ``field`` names the parameter, input, dose or file entry."""
