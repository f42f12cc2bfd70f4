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
ACTIONS: dict[str, str] = {
    # patient
    "PatientName": "Z", "PatientID": "Z", "PatientBirthDate": "Z", "PatientSex": "Z", "PatientBirthTime": "X",
    "PatientBirthName": "X", "PatientMotherBirthName": "X", "OtherPatientIDs": "X",
    "OtherPatientIDsSequence": "X", "OtherPatientNames": "X", "PatientAddress": "X", "PatientAge": "X",
    "PatientSize": "X", "PatientWeight": "X", "PatientTelephoneNumbers": "X", "PatientComments": "X",
    "PatientReligiousPreference": "X", "PatientState": "X", "PatientInstitutionResidence": "X",
    "PatientInsurancePlanCodeSequence": "X", "PatientPrimaryLanguageCodeSequence": "X",
    "PatientSexNeutered": "X", "PatientTransportArrangements": "X", "IssuerOfPatientID": "X",
    "EthnicGroup": "X", "Occupation": "X", "MilitaryRank": "X", "BranchOfService": "X",
    "CountryOfResidence": "X", "RegionOfResidence": "X", "MedicalRecordLocator": "X", "MedicalAlerts": "X",
    "Allergies": "X", "SmokingStatus": "X", "PregnancyStatus": "X", "AdditionalPatientHistory": "X",
    "SpecialNeeds": "X", "PatientSpeciesDescription": "X", "ResponsiblePerson": "X",
    "ResponsibleOrganization": "X", "ReferencedPatientSequence": "X", "ReferencedPatientPhotoSequence": "X",
    "PatientBirthDateInAlternativeCalendar": "X", "PatientDeathDateInAlternativeCalendar": "X",
    "ConfidentialityConstraintOnPatientDataDescription": "X", "PatientTelecomInformation": "X",
    # study, visit, request
    "StudyDate": "Z", "StudyTime": "Z", "StudyID": "Z", "AccessionNumber": "Z", "StudyDescription": "X",
    "StudyComments": "X", "StudyIDIssuer": "X", "ReferringPhysicianName": "Z", "ReferringPhysicianAddress": "X",
    "ReferringPhysicianTelephoneNumbers": "X", "ReferringPhysicianIdentificationSequence": "X",
    "ConsultingPhysicianName": "X", "ConsultingPhysicianIdentificationSequence": "X",
    "PhysiciansOfRecord": "X", "PhysiciansOfRecordIdentificationSequence": "X",
    "NameOfPhysiciansReadingStudy": "X", "PhysiciansReadingStudyIdentificationSequence": "X",
    "RequestingPhysician": "X", "RequestingService": "X", "RequestedProcedureDescription": "X",
    "RequestedProcedureID": "X", "RequestAttributesSequence": "X", "ReasonForStudy": "X",
    "ReasonForTheRequestedProcedure": "X", "AdmissionID": "X", "IssuerOfAdmissionID": "X",
    "AdmittingDate": "X", "AdmittingTime": "X", "AdmittingDiagnosesDescription": "X",
    "AdmittingDiagnosesCodeSequence": "X", "DischargeDiagnosisDescription": "X", "ServiceEpisodeID": "X",
    "ServiceEpisodeDescription": "X", "VisitComments": "X", "CurrentPatientLocation": "X",
    "ReferencedStudySequence": "X", "ReferencedPerformedProcedureStepSequence": "X",
    "PerformedProcedureStepID": "X", "PerformedProcedureStepDescription": "X",
    "PerformedProcedureStepStartDate": "X", "PerformedProcedureStepStartTime": "X",
    "PerformedProcedureStepEndDate": "X", "PerformedProcedureStepEndTime": "X", "PerformedLocation": "X",
    "PerformedStationName": "X", "PerformedStationAETitle": "X", "ScheduledPerformingPhysicianName": "X",
    "ScheduledProcedureStepDescription": "X", "ScheduledStationName": "X", "PreMedication": "X",
    "InsurancePlanIdentification": "X", "OrderEnteredBy": "X", "OrderEntererLocation": "X",
    "OrderCallbackPhoneNumber": "X", "PlacerOrderNumberImagingServiceRequest": "X",
    "FillerOrderNumberImagingServiceRequest": "X", "ResultsComments": "X", "InterpretationAuthor": "X",
    "InterpretationRecorder": "X", "InterpretationTranscriber": "X", "InterpretationApproverSequence": "X",
    "DistributionName": "X", "DistributionAddress": "X", "NamesOfIntendedRecipientsOfResults": "X",
    "IntendedRecipientsOfResultsIdentificationSequence": "X",
    # series, acquisition, people who did it
    "SeriesDate": "X", "SeriesTime": "X", "AcquisitionDate": "X", "AcquisitionTime": "X",
    "AcquisitionDateTime": "X", "ContentDate": "Z", "ContentTime": "Z", "InstanceCreationDate": "X",
    "InstanceCreationTime": "X", "OverlayDate": "X", "OverlayTime": "X", "CurveDate": "X", "CurveTime": "X",
    "SeriesDescription": "X", "ProtocolName": "X", "OperatorsName": "X", "OperatorIdentificationSequence": "X",
    "PerformingPhysicianName": "X", "PerformingPhysicianIdentificationSequence": "X",
    "ActualHumanPerformersSequence": "X", "HumanPerformerName": "X", "HumanPerformerOrganization": "X",
    "ContentCreatorName": "Z", "ContentCreatorIdentificationCodeSequence": "X", "AuthorObserverSequence": "X",
    "VerifyingObserverName": "X", "VerifyingObserverSequence": "X", "VerifyingOrganization": "X",
    "PersonName": "X", "PersonAddress": "X", "PersonTelephoneNumbers": "X", "ParticipantSequence": "X",
    "AcquisitionComments": "X", "AcquisitionContextSequence": "X", "ImageComments": "X", "FrameComments": "X",
    "DerivationDescription": "X", "TextComments": "X", "TextString": "X", "Arbitrary": "X",
    "ContentSequence": "X", "DigitalSignaturesSequence": "X", "DataSetTrailingPadding": "X",
    "OriginalAttributesSequence": "X", "ModifiedAttributesSequence": "X", "ReferencedImageSequence": "X",
    "SourceImageSequence": "X", "IconImageSequence": "X", "AcquisitionDeviceProcessingDescription": "X",
    # equipment and institution
    "InstitutionName": "X", "InstitutionAddress": "X", "InstitutionalDepartmentName": "X",
    "InstitutionCodeSequence": "X", "StationName": "X", "DeviceSerialNumber": "X", "DeviceID": "X",
    "DetectorID": "X", "GantryID": "X", "GeneratorID": "X", "CassetteID": "X", "PlateID": "X",
    "ModifyingDeviceID": "X", "ModifyingDeviceManufacturer": "X", "CustodialOrganizationSequence": "X",
    "SourceApplicationEntityTitle": "X", "ScheduledStudyLocation": "X", "ScheduledStudyLocationAETitle": "X",
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
