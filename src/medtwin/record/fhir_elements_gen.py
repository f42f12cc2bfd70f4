"""Generate ``data/fhir_elements.json``: every element of every FHIR type (resources, datatypes, backbone
elements) with its type and whether it repeats, read from fhir.resources' R4B models (FHIR 4.3.0, whose
resources are R4's with few additions), a development dependency needed only to regenerate the file:

    .venv/bin/python -m medtwin.record.fhir_elements_gen

Output: ``{"Type": {"element": ["type", repeats]}}``; a primitive's type is its FHIR name (``dateTime``,
``decimal``, ``code`` ...), a contained resource's is ``Resource``.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).parent / "data" / "fhir_elements.json"

_PRIMITIVES = {"Base64Binary": "base64Binary", "Boolean": "boolean", "Canonical": "canonical", "Code": "code",
               "Date": "date", "DateTime": "dateTime", "Decimal": "decimal", "Id": "id", "Instant": "instant",
               "Integer": "integer", "Integer64": "integer64", "Markdown": "markdown", "Oid": "oid",
               "PositiveInt": "positiveInt", "String": "string", "Time": "time", "UnsignedInt": "unsignedInt",
               "Uri": "uri", "Url": "url", "Uuid": "uuid", "Xhtml": "xhtml"}


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the element's own type, whether it repeats) of an Optional/List/Annotated annotation."""
    repeats = False
    while True:
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            annotation = next(a for a in args if a is not type(None))
        elif origin in (list, typing.List):  # noqa: UP006
            repeats, annotation = True, args[0]
        else:
            return annotation, repeats


def _type_name(annotation: Any) -> str | None:
    if typing.get_origin(annotation) is typing.Annotated:
        for meta in typing.get_args(annotation)[1:]:
            name = _PRIMITIVES.get(type(meta).__name__)
            if name:
                return name
            if type(meta).__name__ == "UuidVersion":
                return "uuid"
        return None
    name = getattr(annotation, "__name__", "")
    if name.endswith("Type"):
        return "Resource" if name == "ResourceType" else name[:-len("Type")]
    return {"bool": "boolean", "str": "string", "int": "integer", "float": "decimal"}.get(name)


def generate() -> dict[str, dict[str, list[Any]]]:
    from fhir.resources.R4B import get_fhir_model_class

    out: dict[str, dict[str, list[Any]]] = {}
    pending = ["Resource", *sorted(_resource_names())]
    while pending:
        name = pending.pop()
        if name in out or name in ("Resource", "FHIRPrimitiveExtension"):
            continue
        try:
            model = get_fhir_model_class(name)
        except (KeyError, ValueError):
            continue
        elements: dict[str, list[Any]] = {}
        for field in model.model_fields.values():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            if not extra.get("element_property") or not field.alias:
                continue
            inner, repeats = _unwrap(field.annotation)
            type_name = _type_name(inner)
            if type_name is None:
                raise ValueError(f"{name}.{field.alias}: unknown type {inner!r}")
            elements[field.alias] = [type_name, repeats]
            if type_name[0].isupper():
                pending.append(type_name)
        out[name] = elements
    return dict(sorted(out.items()))


def _resource_names() -> list[str]:
    from medtwin.record.fhir_spec import RESOURCE_TYPES

    return list(RESOURCE_TYPES)


if __name__ == "__main__":
    OUTPUT.write_text(json.dumps(generate(), indent=0, sort_keys=True) + "\n")
    print(OUTPUT)
