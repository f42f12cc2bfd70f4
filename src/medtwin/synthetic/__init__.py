"""medtwin.synthetic: deterministic synthetic FHIR R4 patients for demos and tests."""

from medtwin.synthetic.patients import (
    ARCHETYPES,
    REFERENCE_DATE,
    archetype_keys,
    ckd_epi_2021,
    generate_bundles,
    write_bundles,
)

__all__ = [
    "ARCHETYPES",
    "REFERENCE_DATE",
    "archetype_keys",
    "ckd_epi_2021",
    "generate_bundles",
    "write_bundles",
]
