"""What medtwin checks structurally of FHIR R4 (4.0.1): the resource types and, for the types we meet,
the top-level elements with cardinality 1..* (from the R4 resource definitions, hl7.org/fhir/R4)."""

from __future__ import annotations

import re

FHIR_VERSION = "4.0.1"

RESOURCE_TYPES: frozenset[str] = frozenset(
    ["Account", "ActivityDefinition", "AdverseEvent", "AllergyIntolerance", "Appointment", "AppointmentResponse", "AuditEvent", "Basic", "Binary", "BiologicallyDerivedProduct", "BodyStructure", "Bundle", "CapabilityStatement", "CarePlan", "CareTeam", "CatalogEntry", "ChargeItem", "ChargeItemDefinition", "Claim", "ClaimResponse", "ClinicalImpression", "CodeSystem", "Communication", "CommunicationRequest", "CompartmentDefinition", "Composition", "ConceptMap", "Condition", "Consent", "Contract", "Coverage", "CoverageEligibilityRequest", "CoverageEligibilityResponse", "DetectedIssue", "Device", "DeviceDefinition", "DeviceMetric", "DeviceRequest", "DeviceUseStatement", "DiagnosticReport", "DocumentManifest", "DocumentReference", "EffectEvidenceSynthesis", "Encounter", "Endpoint", "EnrollmentRequest", "EnrollmentResponse", "EpisodeOfCare", "EventDefinition", "Evidence", "EvidenceVariable", "ExampleScenario", "ExplanationOfBenefit", "FamilyMemberHistory", "Flag", "Goal", "GraphDefinition", "Group", "GuidanceResponse", "HealthcareService", "ImagingStudy", "Immunization", "ImmunizationEvaluation", "ImmunizationRecommendation", "ImplementationGuide", "InsurancePlan", "Invoice", "Library", "Linkage", "List", "Location", "Measure", "MeasureReport", "Media", "Medication", "MedicationAdministration", "MedicationDispense", "MedicationKnowledge", "MedicationRequest", "MedicationStatement", "MedicinalProduct", "MedicinalProductAuthorization", "MedicinalProductContraindication", "MedicinalProductIndication", "MedicinalProductIngredient", "MedicinalProductInteraction", "MedicinalProductManufactured", "MedicinalProductPackaged", "MedicinalProductPharmaceutical", "MedicinalProductUndesirableEffect", "MessageDefinition", "MessageHeader", "MolecularSequence", "NamingSystem", "NutritionOrder", "Observation", "ObservationDefinition", "OperationDefinition", "OperationOutcome", "Organization", "OrganizationAffiliation", "Parameters", "Patient", "PaymentNotice", "PaymentReconciliation", "Person", "PlanDefinition", "Practitioner", "PractitionerRole", "Procedure", "Provenance", "Questionnaire", "QuestionnaireResponse", "RelatedPerson", "RequestGroup", "ResearchDefinition", "ResearchElementDefinition", "ResearchStudy", "ResearchSubject", "RiskAssessment", "RiskEvidenceSynthesis", "Schedule", "SearchParameter", "ServiceRequest", "Slot", "Specimen", "SpecimenDefinition", "StructureDefinition", "StructureMap", "Subscription", "Substance", "SubstanceNucleicAcid", "SubstancePolymer", "SubstanceProtein", "SubstanceReferenceInformation", "SubstanceSourceMaterial", "SubstanceSpecification", "SupplyDelivery", "SupplyRequest", "Task", "TerminologyCapabilities", "TestReport", "TestScript", "ValueSet", "VerificationResult", "VisionPrescription"]
)

# Top-level elements with min cardinality >= 1 in R4. "x" suffix: a choice element (value[x]).
REQUIRED_ELEMENTS: dict[str, tuple[str, ...]] = {
    "AllergyIntolerance": ("patient",),
    "AuditEvent": ("type", "recorded", "agent", "source"),
    "CarePlan": ("status", "intent", "subject"),
    "Claim": ("status", "type", "use", "patient", "created", "provider", "priority", "insurance"),
    "Condition": ("subject",),
    "Consent": ("status", "scope", "category"),
    "Coverage": ("status", "beneficiary", "payor"),
    "DiagnosticReport": ("status", "code"),
    "DocumentReference": ("status", "content"),
    "Encounter": ("status", "class"),
    "ExplanationOfBenefit": (
        "status", "type", "use", "patient", "created", "insurer", "provider", "outcome", "insurance",
    ),
    "Goal": ("lifecycleStatus", "description", "subject"),
    "ImagingStudy": ("status", "subject"),
    "Immunization": ("status", "vaccineCode", "patient", "occurrence[x]"),
    "MedicationAdministration": ("status", "medication[x]", "subject", "effective[x]"),
    "MedicationDispense": ("status", "medication[x]"),
    "MedicationRequest": ("status", "intent", "medication[x]", "subject"),
    "MedicationStatement": ("status", "medication[x]", "subject"),
    "Observation": ("status", "code"),
    "Procedure": ("status", "subject"),
    "Provenance": ("target", "recorded", "agent"),
    "ServiceRequest": ("status", "intent", "subject"),
    "Specimen": (),
    "SupplyDelivery": (),
}

ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def has_element(resource: dict[str, object], element: str) -> bool:
    """Whether ``element`` (possibly a choice ``name[x]``) is present and not empty."""
    if element.endswith("[x]"):
        stem = element[:-3]
        return any(
            key.startswith(stem) and key[len(stem):len(stem) + 1].isupper() and resource[key] not in (None, "", [], {})
            for key in resource
        )
    value = resource.get(element)
    # present unless None, "", [] or {} (0 and False are values): the same as `not in (None, "", [], {})`
    return value is not None and (bool(value) or not isinstance(value, str | list | dict))
