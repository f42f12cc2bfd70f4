"""De-identification of DICOM headers: the Basic Application Level Confidentiality Profile (DICOM PS3.15 Annex
E, table E.1-1), applied to every DICOM file that leaves medtwin.

Actions as the profile names them: ``X`` remove, ``Z`` replace with a zero-length value, ``U`` replace a UID
with another one, consistently within one export (a :class:`UidMap`: the same original UID always gets the same
replacement, so slices still share their study, series and frame of reference, and references between
instances still resolve). Where the profile allows a choice (``X/Z``,
``X/D``, ``X/Z/D``) we take the stronger one that keeps the file valid: ``Z`` for type 2 attributes, else ``X``.
All private tags are removed (the profile's default without the Retain Safe Private option), and so are the
overlay and curve groups (60xx, 50xx: burned-in text can live there). Geometry, pixel data and the attributes
describing them are kept. ``PatientIdentityRemoved`` = ``YES``, ``DeidentificationMethod`` and
``DeidentificationMethodCodeSequence`` (DCM 113100 "Basic Application Confidentiality Profile") record it.

The table below lists the attributes of E.1-1 that carry identity in the images medtwin handles (patient,
study, series, equipment, institution, people, dates and times, free text, request and procedure details);
``UI`` attributes not listed as kept are replaced as ``U`` wherever they occur, including in sequences.
"""

from __future__ import annotations

import copy
import secrets
import uuid
from collections.abc import Iterable

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

PROFILE = "DICOM PS3.15 E.1 Basic Application Level Confidentiality Profile"

#: keyword -> action (X remove, Z empty). Source: DICOM PS3.15 (2024b) table E.1-1, basic profile column.
#: Emptied (``Z``): the type 2 attributes, which must stay present; every other listed attribute is removed (``X``).
EMPTIED = frozenset({
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
    "AccessionNumber", "ReferringPhysicianName", "ContentDate", "ContentTime", "ContentCreatorName",
})
REMOVED: dict[str, str] = {  # topic -> the keywords removed, space-separated
    "patient": (
        "PatientBirthTime PatientBirthName PatientMotherBirthName OtherPatientIDs OtherPatientIDsSequence "
        "OtherPatientNames PatientAddress PatientAge PatientSize PatientWeight PatientTelephoneNumbers "
        "PatientComments PatientReligiousPreference PatientState PatientInstitutionResidence "
        "PatientInsurancePlanCodeSequence PatientPrimaryLanguageCodeSequence PatientSexNeutered "
        "PatientTransportArrangements IssuerOfPatientID EthnicGroup Occupation MilitaryRank BranchOfService "
        "CountryOfResidence RegionOfResidence MedicalRecordLocator MedicalAlerts Allergies SmokingStatus "
        "PregnancyStatus AdditionalPatientHistory SpecialNeeds PatientSpeciesDescription ResponsiblePerson "
        "ResponsibleOrganization ReferencedPatientSequence ReferencedPatientPhotoSequence "
        "PatientBirthDateInAlternativeCalendar PatientDeathDateInAlternativeCalendar "
        "ConfidentialityConstraintOnPatientDataDescription PatientTelecomInformation"
    ),
    "study, visit, request": (
        "StudyDescription StudyComments StudyIDIssuer ReferringPhysicianAddress "
        "ReferringPhysicianTelephoneNumbers ReferringPhysicianIdentificationSequence ConsultingPhysicianName "
        "ConsultingPhysicianIdentificationSequence PhysiciansOfRecord "
        "PhysiciansOfRecordIdentificationSequence NameOfPhysiciansReadingStudy "
        "PhysiciansReadingStudyIdentificationSequence RequestingPhysician RequestingService "
        "RequestedProcedureDescription RequestedProcedureID RequestAttributesSequence ReasonForStudy "
        "ReasonForTheRequestedProcedure AdmissionID IssuerOfAdmissionID AdmittingDate AdmittingTime "
        "AdmittingDiagnosesDescription AdmittingDiagnosesCodeSequence DischargeDiagnosisDescription "
        "ServiceEpisodeID ServiceEpisodeDescription VisitComments CurrentPatientLocation "
        "ReferencedStudySequence ReferencedPerformedProcedureStepSequence PerformedProcedureStepID "
        "PerformedProcedureStepDescription PerformedProcedureStepStartDate PerformedProcedureStepStartTime "
        "PerformedProcedureStepEndDate PerformedProcedureStepEndTime PerformedLocation PerformedStationName "
        "PerformedStationAETitle ScheduledPerformingPhysicianName ScheduledProcedureStepDescription "
        "ScheduledStationName PreMedication InsurancePlanIdentification OrderEnteredBy OrderEntererLocation "
        "OrderCallbackPhoneNumber PlacerOrderNumberImagingServiceRequest "
        "FillerOrderNumberImagingServiceRequest ResultsComments InterpretationAuthor InterpretationRecorder "
        "InterpretationTranscriber InterpretationApproverSequence DistributionName DistributionAddress "
        "NamesOfIntendedRecipientsOfResults IntendedRecipientsOfResultsIdentificationSequence"
    ),
    "series, acquisition, people who did it": (
        "SeriesDate SeriesTime AcquisitionDate AcquisitionTime AcquisitionDateTime InstanceCreationDate "
        "InstanceCreationTime OverlayDate OverlayTime CurveDate CurveTime SeriesDescription ProtocolName "
        "OperatorsName OperatorIdentificationSequence PerformingPhysicianName "
        "PerformingPhysicianIdentificationSequence ActualHumanPerformersSequence HumanPerformerName "
        "HumanPerformerOrganization ContentCreatorIdentificationCodeSequence AuthorObserverSequence "
        "VerifyingObserverName VerifyingObserverSequence VerifyingOrganization PersonName PersonAddress "
        "PersonTelephoneNumbers ParticipantSequence AcquisitionComments AcquisitionContextSequence "
        "ImageComments FrameComments DerivationDescription TextComments TextString Arbitrary ContentSequence "
        "DigitalSignaturesSequence DataSetTrailingPadding OriginalAttributesSequence "
        "ModifiedAttributesSequence ReferencedImageSequence SourceImageSequence IconImageSequence "
        "AcquisitionDeviceProcessingDescription"
    ),
    "equipment and institution": (
        "InstitutionName InstitutionAddress InstitutionalDepartmentName InstitutionCodeSequence StationName "
        "DeviceSerialNumber DeviceID DetectorID GantryID GeneratorID CassetteID PlateID ModifyingDeviceID "
        "ModifyingDeviceManufacturer CustodialOrganizationSequence SourceApplicationEntityTitle "
        "ScheduledStudyLocation ScheduledStudyLocationAETitle"
    ),
}
ACTIONS: dict[str, str] = {keyword: "Z" for keyword in EMPTIED} | {
    keyword: "X" for keywords in REMOVED.values() for keyword in keywords.split()
}

#: UID attributes that name a kind (a SOP class, a transfer syntax, a coding scheme), not an instance: kept.
KEEP_UIDS = frozenset({"SOPClassUID", "MediaStorageSOPClassUID", "ReferencedSOPClassUID", "TransferSyntaxUID",
                       "ImplementationClassUID", "CodingSchemeUID", "ContextGroupExtensionCreatorUID",
                       "ReferencedSOPClassUIDInFile", "RelatedGeneralSOPClassUID",
                       "OriginalSpecializedSOPClassUID"})
STANDARD_UID_ROOT = "1.2.840.10008."  # UIDs defined by the standard itself are not instances


class UidMap:
    """Replacement UIDs under 2.25, the same for the same original within one map (one export)."""

    def __init__(self, salt: str | None = None) -> None:
        self.salt = salt or secrets.token_hex(16)
        self.replaced: dict[str, str] = {}

    def __call__(self, uid: str) -> str:
        uid = str(uid).strip()
        if uid.startswith(STANDARD_UID_ROOT) or not uid:
            return uid
        if uid not in self.replaced:
            self.replaced[uid] = f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, f'{self.salt}|{uid}').int}"
        return self.replaced[uid]


def _clean(ds: Dataset, uids: UidMap) -> None:
    for element in list(ds):
        tag = element.tag
        if tag.is_private or tag.group & 0xFF00 in (0x5000, 0x6000):
            del ds[tag]
            continue
        action = ACTIONS.get(element.keyword)
        if action == "X":
            del ds[tag]
        elif action == "Z":
            element.value = Sequence([]) if element.VR == "SQ" else ""
        elif element.VR == "UI" and element.keyword not in KEEP_UIDS and element.value:
            values = element.value if element.VM > 1 else [element.value]
            replaced = [uids(v) for v in values]
            element.value = replaced if element.VM > 1 else replaced[0]
        elif element.VR == "SQ":
            for item in element.value:
                _clean(item, uids)


def deidentify(ds: Dataset, uids: UidMap) -> Dataset:
    """A de-identified copy of ``ds`` (file meta included); ``uids`` is shared by all files of one export."""
    out = copy.deepcopy(ds)
    _clean(out, uids)
    meta = getattr(out, "file_meta", None)
    if meta is not None:
        for keyword in ("MediaStorageSOPInstanceUID",):
            if keyword in meta:
                meta[keyword].value = uids(meta[keyword].value)
        if "SourceApplicationEntityTitle" in meta:
            del meta.SourceApplicationEntityTitle
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = PROFILE
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "113100", "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    out.DeidentificationMethodCodeSequence = Sequence([code])
    return out


def deidentify_all(datasets: Iterable[Dataset], salt: str | None = None) -> list[Dataset]:
    """De-identify the files of one export with one UID map."""
    uids = UidMap(salt)
    return [deidentify(ds, uids) for ds in datasets]
