"""The JSON Schemas in schemas/ and the API's OpenAPI document agree with the typed records.

The typed classes are the one source of each record's fields: :func:`models.core.records.json_schema`
derives their structure, and the hand-written files (which add descriptions and ranges) must have the
same fields, JSON types and required set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from forecaster.settings import Settings
from models.core.bar import Bar
from models.core.deadletter import DeadLetter
from models.core.records import Prediction, Score, json_schema

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
RECORDS = {"prediction": Prediction, "score": Score, "bar": Bar, "dead_letter": DeadLetter}
JSON_NAMES = {str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}


def _types(prop: dict[str, Any]) -> set[str]:
    """The JSON types a property allows, whether it says so by type, const or enum."""
    if "const" in prop:
        return {JSON_NAMES[type(prop["const"])]}
    if "enum" in prop:
        return {JSON_NAMES[type(value)] for value in prop["enum"]}
    kinds = prop["type"]
    kinds = [kinds] if isinstance(kinds, str) else kinds
    return {"number" if kind == "integer" else kind for kind in kinds}


def _structure(schema: dict[str, Any]) -> dict[str, Any]:
    return {"properties": {name: _types(prop) for name, prop in schema["properties"].items()},
            "patterns": {pattern: _types(prop) for pattern, prop
                         in schema.get("patternProperties", {}).items()},
            "required": set(schema["required"]),
            "closed": schema.get("additionalProperties") is False}


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_committed_schema_has_the_fields_types_and_required_set_of_its_class(name: str) -> None:
    committed = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    assert _structure(committed) == _structure(json_schema(RECORDS[name]))


def test_every_schema_file_has_a_typed_record() -> None:
    assert {path.name.removesuffix(".schema.json") for path in SCHEMAS.glob("*.schema.json")} == set(RECORDS)


def test_the_api_documents_its_records_with_the_typed_records_schemas() -> None:
    components = create_app(Settings()).openapi()["components"]["schemas"]
    forecast = components["ForecastOut"]["properties"]
    assert forecast["predictions"]["items"] == json_schema(Prediction)
    assert forecast["scores"]["items"] == json_schema(Score)
    assert forecast["dead_letters"]["items"] == json_schema(DeadLetter)
    latest = components["LatestOut"]["properties"]
    assert latest["prediction"]["anyOf"] == [json_schema(Prediction), {"type": "null"}]
    assert latest["score"]["anyOf"] == [json_schema(Score), {"type": "null"}]
