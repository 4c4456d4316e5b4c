"""Check responses against the application's OpenAPI document (jsonschema).

For every response, :class:`ResponseValidator` finds the operation (path template and
method), the documented response (exact status, ``2XX`` range, or ``default``) and the
media type, and validates a JSON body against its schema with ``jsonschema`` — the
document is registered whole, so its ``$ref`` s resolve. OpenAPI 3.1 schemas are JSON
Schema 2020-12; 3.0's are read as draft 4 with ``nullable`` translated.

What the document does not describe — a path, a method, a status or a media type it
does not list — is not checked: validation is about the responses the document
promises. A mismatch raises :class:`ResponseMismatch` naming method, path, status and
each field that does not fit.

Nothing here imports pytest.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pytest_integration_kit.errors import ConfigError

if TYPE_CHECKING:
    import httpx

__all__ = ["ResponseMismatch", "ResponseValidator", "document_of"]

DOCUMENT_URI: Final = "urn:pytest-integration-kit:openapi"
METHODS: Final = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
#: How many mismatching fields one failure lists.
SHOWN_ERRORS: Final = 10


class ResponseMismatch(AssertionError):
    """A response that does not fit the OpenAPI document."""


def document_of(app: Any, source: bool | str | Path, root: Path) -> dict[str, Any]:
    """The document: the application's own (``True``: FastAPI, Litestar) or a file."""
    if source is True:
        if callable(getattr(app, "openapi", None)):  # FastAPI
            return dict(app.openapi())
        schema = getattr(app, "openapi_schema", None)  # Litestar
        if schema is not None and hasattr(schema, "to_schema"):
            return dict(schema.to_schema())
        raise ConfigError(
            f"integration_openapi = true reads the document from the application, which "
            f"a {type(app).__name__} does not offer (FastAPI and Litestar do): give the "
            "path to the document instead (JSON or YAML)"
        )
    path = Path(str(source))
    if not path.is_absolute():
        path = root / path
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"integration_openapi: cannot read {path}: {exc.strerror}") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415 - optional dependency, only for YAML documents

            document = yaml.safe_load(text)
        else:
            document = json.loads(text)
    except Exception as exc:
        raise ConfigError(f"integration_openapi: {path} is not a valid document: {exc}") from None
    if not isinstance(document, dict) or "paths" not in document:
        raise ConfigError(f"integration_openapi: {path} has no 'paths': not an OpenAPI document")
    return document


def _nullable_to_type(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` as JSON Schema (``null`` among the types)."""
    if isinstance(node, list):
        return [_nullable_to_type(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable_to_type(value) for key, value in node.items()}
    if node.pop("nullable", False) is True:
        kind = node.get("type")
        if isinstance(kind, str):
            node["type"] = [kind, "null"]
        elif kind is None:
            node = {"anyOf": [node, {"type": "null"}]}
    return node


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


class ResponseValidator:
    """Validates responses against one OpenAPI document."""

    def __init__(self, document: dict[str, Any]) -> None:
        from jsonschema import (  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415 - the [apps] extra, imported when used
            Draft4Validator,
            Draft202012Validator,
        )
        from referencing import Registry  # noqa: PLC0415 - the [apps] extra, imported when used
        from referencing.jsonschema import DRAFT4, DRAFT202012  # noqa: PLC0415 - the [apps] extra, imported when used

        version = str(document.get("openapi", "3.1"))
        if version.startswith("3.0"):
            document = _nullable_to_type(copy.deepcopy(document))
            self._validator_class: Any = Draft4Validator
            resource = DRAFT4.create_resource(document)
        else:
            self._validator_class = Draft202012Validator
            resource = DRAFT202012.create_resource(document)
        self.document = document
        self._registry = Registry().with_resource(DOCUMENT_URI, resource)
        self._routes = self._compile(document.get("paths") or {})
        self._validators: dict[str, Any] = {}

    @staticmethod
    def _compile(paths: dict[str, Any]) -> list[tuple[re.Pattern[str], str]]:
        routes = []
        for template in paths:
            pattern = "".join(
                "[^/]+" if part.startswith("{") else re.escape(part)
                for part in re.split(r"(\{[^}/]+\})", template)
            )
            routes.append((re.compile(pattern + "/?"), template))
        # Literal segments win over parameters: /users/me before /users/{id}.
        routes.sort(key=lambda route: route[1].count("{"))
        return routes

    def _template(self, path: str) -> str | None:
        for pattern, template in self._routes:
            if pattern.fullmatch(path):
                return template
        return None

    def validate(self, response: httpx.Response) -> None:
        """Raise :class:`ResponseMismatch` if ``response`` does not fit the document."""
        request = response.request
        method = request.method.lower()
        template = self._template(request.url.path)
        if template is None:
            return
        operation = self.document["paths"][template].get(method)
        if not isinstance(operation, dict):
            return
        responses = operation.get("responses") or {}
        status = str(response.status_code)
        for key in (status, status[0] + "XX", status[0] + "xx", "default"):
            if key in responses:
                break
        else:
            return
        documented = responses[key]
        if "$ref" in documented:
            return  # a shared response object: its schema is checked where it is inlined
        media = response.headers.get("content-type", "").split(";")[0].strip().lower()
        content = documented.get("content") or {}
        chosen = next(
            (
                name
                for name in (media, media.split("/")[0] + "/*", "*/*")
                if name in content and "schema" in (content[name] or {})
            ),
            None,
        )
        if chosen is None or not (media == "application/json" or media.endswith("+json")):
            return
        pointer = "/".join(
            _escape(part)
            for part in ("paths", template, method, "responses", key, "content", chosen, "schema")
        )
        validator = self._validators.get(pointer)
        if validator is None:
            validator = self._validator_class(
                {"$ref": f"{DOCUMENT_URI}#/{pointer}"}, registry=self._registry
            )
            self._validators[pointer] = validator
        try:
            body = response.json()
        except ValueError:
            self._fail(request.method, template, status, ["(body): not valid JSON"])
            return
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        if errors:
            fields = [
                f"{'.'.join(str(p) for p in error.absolute_path) or '(body)'}: {error.message}"
                for error in errors[:SHOWN_ERRORS]
            ]
            if len(errors) > SHOWN_ERRORS:
                fields.append(f"… and {len(errors) - SHOWN_ERRORS} more")
            self._fail(request.method, template, status, fields, request.url.path)

    @staticmethod
    def _fail(method: str, template: str, status: str, fields: list[str], path: str = "") -> None:
        where = f"{method} {template}" + (f" ({path})" if path and path != template else "")
        raise ResponseMismatch(
            f"response does not match the OpenAPI document: {where} → {status}\n  "
            + "\n  ".join(fields)
        )
