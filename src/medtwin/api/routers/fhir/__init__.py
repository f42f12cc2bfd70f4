"""FHIR R4 REST at ``/fhir``: one ``router`` over the read side (``read``: metadata, read, vread, history,
search, $everything), the write side (``write``: create, update, batch/transaction, $validate) and Bulk
Data (``bulk``: $export, status, files). Errors are
OperationOutcomes (``api.fhir_support``); the core (preparing units, planning Bundles, searching) lives in
``record`` and ``store``."""

from __future__ import annotations

from fastapi import APIRouter

from medtwin.api.routers.fhir import bulk, read, write

# Not in the OpenAPI document: a FHIR server describes itself by its CapabilityStatement (/fhir/metadata),
# and its answers are FHIR resources, not the problem+json the OpenAPI document promises for /api/v1.
router = APIRouter(prefix="/fhir", tags=["fhir"], include_in_schema=False)
router.add_api_route("", write.base_bundle, methods=["POST"])  # batch/transaction at the base
router.add_api_route("/", write.base_bundle, methods=["POST"])  # clients that join paths to "base/"
router.include_router(bulk.router)  # before read: $export paths would otherwise read as a type or an id
router.include_router(write.router)
router.include_router(read.router)

__all__ = ["router"]
