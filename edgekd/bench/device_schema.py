"""The device JSON formats, checked against their one definition: ``device_eval.schema.json`` beside this module.

The Android app (android_demo/.../DeviceEvalJson.java) writes result.json, the host writes request.json, and both
follow the same JSON Schema (draft 2020-12). The check is the maintained ``jsonschema`` package rather than a
checker of our own, so every keyword the schema may come to use is understood the way the standard means it.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMA_PATH = Path(__file__).with_name("device_eval.schema.json")
FORMAT = "edgekd-device-eval/1"  # result.json's "format" (the schema's const)
REQUEST_FORMAT = "edgekd-device-request/1"  # request.json's "format" ($defs/request)
MAX_LINE = 240  # jsonschema quotes the offending value whole; an error stays one readable line


def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def validator(schema: dict | None = None, definition: str | None = None) -> Draft202012Validator:
    """A validator of the result document, or of ``$defs/<definition>`` resolved inside the same schema (so its
    own ``$ref``s still work)."""
    if schema is None:
        return _shipped_validator(definition)
    return _build(schema, definition)


@functools.lru_cache(maxsize=None)
def _shipped_validator(definition: str | None) -> Draft202012Validator:
    return _build(load_schema(), definition)


def _build(schema: dict, definition: str | None) -> Draft202012Validator:
    if definition is None:
        return Draft202012Validator(schema)
    if definition not in schema.get("$defs", {}):
        raise KeyError(f"the device schema has no $defs/{definition}")
    uri = schema.get("$id") or "urn:edgekd:device-eval"
    registry = Registry().with_resource(uri, Resource.from_contents(schema))
    return Draft202012Validator({"$ref": f"{uri}#/$defs/{definition}"}, registry=registry)


def schema_errors(value, schema: dict | None = None, definition: str | None = None) -> list[str]:
    """Where ``value`` breaks the device JSON schema (the result document, or ``$defs/<definition>``), one line
    each, as "JSON path: what jsonschema says", in document order; empty when it conforms."""
    errors = sorted(validator(schema, definition).iter_errors(value), key=lambda e: e.json_path)
    return [_line(e) for e in errors]


def _line(error) -> str:
    message = error.message
    if error.validator == "const":  # jsonschema names only the expected value
        message = f"{_show(error.instance)}, but {message}"
    line = f"{error.json_path}: {' '.join(message.split())}"
    return line if len(line) <= MAX_LINE else line[:MAX_LINE - 3] + "..."


def _show(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
