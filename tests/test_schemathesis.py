"""Schemathesis against the intake API's OpenAPI document, in-process on the WSGI app.

Schemathesis loads the document the app serves at GET /api/v1/openapi.json, generates requests from
it (valid bodies and, in negative mode, bodies, queries and types that break it) and checks every
answer: never a server error; status codes, content types and bodies as the document declares them;
the bearer token really required.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection

AUTH = {"Authorization": "Bearer dev-intake-token"}  # the development intake.api_token
# The API validates each item on its own and answers 200 with an error per bad item (a batch from a
# service centre must not be refused whole for one bad row), so a schema-invalid item is "accepted".
EXCLUDED = [negative_data_rejection]
BOUNDED = hypothesis_settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


def intake_operation(app):
    """The POST operation of the document the app serves, bound to the app (WSGI, in-process)."""
    # Loaded here rather than through schemathesis' pytest fixture loader, which this pytest breaks.
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    return schema["/api/v1/service-items"]["POST"]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_intake_api_conforms_to_its_openapi_document(app, mode):
    @BOUNDED
    @given(case=intake_operation(app).as_strategy(generation_mode=mode))
    def check(case):
        case.call_and_validate(headers=AUTH, excluded_checks=EXCLUDED)

    check()


def test_intake_api_refuses_every_generated_request_without_the_token(app):
    @BOUNDED
    @given(case=intake_operation(app).as_strategy())
    def check(case):
        response = case.call(headers={"Authorization": "Bearer not-the-token"})
        assert response.status_code == 401
        assert response.json() == {"error": "missing or wrong bearer token"}

    check()
