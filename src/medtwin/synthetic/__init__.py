"""medtwin.synthetic: deterministic synthetic FHIR R4 patients for demos and tests (re-exports
:mod:`medtwin.synthetic.patients`, whose ``__all__`` is the one list of public names)."""

from medtwin.synthetic.patients import ARCHETYPES as ARCHETYPES
from medtwin.synthetic.patients import REFERENCE_DATE as REFERENCE_DATE
from medtwin.synthetic.patients import archetype_entries as archetype_entries
from medtwin.synthetic.patients import archetype_keys as archetype_keys
from medtwin.synthetic.patients import ckd_epi_2021 as ckd_epi_2021
from medtwin.synthetic.patients import generate_bundles as generate_bundles
from medtwin.synthetic.patients import write_bundles as write_bundles
