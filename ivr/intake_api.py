"""REST intake: `POST /api/v1/service-items` (bearer token) and its OpenAPI document."""

from __future__ import annotations

import hmac
import logging
import re
from typing import Any

from flask import Blueprint, Response, jsonify, request

from ivr import web
from models.intake import FIELDS, Importer, IntakeOptions, RowStatus
from models.items import ServiceItem

log = logging.getLogger(__name__)
_SOURCE_LENGTH = ServiceItem.__table__.c.source.type.length
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # as the OpenAPI document's pattern says
bp = Blueprint("intake_api", __name__, url_prefix="/api/v1")


def _problem(status: int, message: str) -> tuple[Response, int]:
    response = jsonify({"error": message})
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="returnvisit"'
    return response, status


def _authorised() -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    expected = web.settings().intake.api_token
    return (
        scheme.lower() == "bearer"
        and bool(expected)
        and hmac.compare_digest(token.strip().encode(), expected.encode())
    )


@bp.post("/service-items")
def post_service_items() -> tuple[Response, int]:
    """Validate and upsert a batch of completed service items; answer a result per item."""
    if not _authorised():
        log.warning("intake API: missing or wrong bearer token from %s", request.remote_addr)
        return _problem(401, "missing or wrong bearer token")
    payload = request.get_json(silent=True)
    if payload is None:
        return _problem(400, "body is not valid JSON (send Content-Type: application/json)")
    if not isinstance(payload, list):
        return _problem(400, "body must be a JSON array of service items")
    settings = web.settings()
    if len(payload) > settings.intake.max_batch:
        return _problem(400, f"too many items: {len(payload)} > intake.max_batch {settings.intake.max_batch}")
    # Stored with every item as ServiceItem.source: refused, not cut, when the column cannot hold it
    # (PostgreSQL refuses a NUL; an unprintable character has no use in a source name).
    raw_source = request.args.get("source") or ""
    if len(raw_source) > _SOURCE_LENGTH:
        return _problem(400, f"source: longer than {_SOURCE_LENGTH} characters")
    if _CONTROL.search(raw_source):
        return _problem(400, "source: contains a control character")
    source = raw_source.strip() or "api"

    results: list[dict[str, Any]] = [{} for _ in payload]

    def record(index: int, ext: str | None, status: RowStatus, reason: str | None) -> None:
        results[index] = {"index": index, "external_id": ext, "status": status.value, "error": reason}

    options = IntakeOptions(
        tz=settings.app.tz,
        region=settings.phones.default_region,
        area_code=settings.phones.default_area_code or None,
        auto_create_departments=settings.intake.auto_create_departments,
    )
    session = web.db_session()
    importer = Importer(session, options, source, on_result=record)
    rows = [
        (index, item if isinstance(item, dict) else {"__error__": "item is not a JSON object"})
        for index, item in enumerate(payload)
    ]
    importer.import_batch(rows)
    session.commit()
    return jsonify({"summary": importer.summary.as_dict(), "results": results}), 200


_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["external_id", "department", "matter", "phone", "completed_at"],
    "properties": {
        "external_id": {"type": "string", "description": "The item's id in the source system."},
        "department": {"type": "string", "description": "Department code (or name)."},
        "department_name": {"type": "string", "description": "Name used if the department is new."},
        "matter": {"type": "string", "description": "事项名称: the service item handled."},
        "channel": {"type": "string", "description": "How it was handled (窗口, 网上办理, ...)."},
        "citizen_name": {"type": "string"},
        "phone": {"type": "string", "description": "The citizen's number as written."},
        "completed_at": {
            "type": "string",
            "description": "Completion time, ISO 8601; without an offset, the centre's time zone.",
        },
    },
}
assert set(_ITEM_SCHEMA["properties"]) == set(FIELDS)

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "returnvisit intake API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "ServiceItem": _ITEM_SCHEMA,
            "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
            "ItemResult": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "external_id": {"type": "string", "nullable": True},
                    "status": {"type": "string", "enum": [s.value for s in RowStatus]},
                    "error": {"type": "string", "nullable": True},
                },
            },
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/service-items": {
            "post": {
                "summary": "Push completed service items (upsert on source + external_id).",
                "parameters": [
                    {
                        "name": "source",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "string",
                            "default": "api",
                            "maxLength": _SOURCE_LENGTH,
                            "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*$",
                        },
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/ServiceItem"},
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "A result per item and a summary.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "summary": {"type": "object"},
                                        "results": {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/ItemResult"},
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "400": {
                        "description": "Malformed JSON, not an array, too many items, or a bad source.",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    },
                    "401": {
                        "description": "Missing or wrong bearer token.",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    },
                },
            }
        }
    },
}


@bp.get("/openapi.json")
def openapi() -> Response:
    """Serve the OpenAPI document of the intake API."""
    return jsonify(OPENAPI)
