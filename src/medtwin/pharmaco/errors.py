"""Typed errors of the pharmaco package. Every error names the offending field or item."""

from __future__ import annotations

from medtwin.errors import InputError


class PharmacoInputError(InputError):
    """Bad input to a pharmaco function; ``field`` names the offending field or item."""


class DoseError(PharmacoInputError):
    """A dose, interval, infusion or route is missing, malformed or inconsistent."""


class UnknownDrugError(PharmacoInputError):
    """The drug name is not in the drug library."""


class CovariateError(PharmacoInputError):
    """A patient covariate is missing or outside its physiological range."""


class VcfError(PharmacoInputError):
    """A VCF file cannot be used (wrong assembly, malformed line, unknown sample)."""


class GenotypeError(PharmacoInputError):
    """A genotype or diplotype string is not recognised."""
