"""The intake REST API: bearer token, malformed bodies, a result per item, the OpenAPI document."""

import pytest
from sqlalchemy import func, select

from models.items import ServiceItem

URL = "/api/v1/service-items"
TOKEN = "dev-intake-token"  # the development stand-in of intake.api_token


def item(ext, **overrides):
    fields = {
        "external_id": ext,
        "department": "SWJ",
        "department_name": "税务局",
        "matter": "契税申报",
        "phone": "13812345678",
        "completed_at": "2026-09-15T10:23:00+08:00",
    }
    fields.update(overrides)
    return fields


def auth(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "headers",
    [{}, auth("wrong"), {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}],
    ids=["missing", "wrong", "basic", "empty"],
)
def test_intake_refuses_missing_or_wrong_token(client, session, headers):
    response = client.post(URL, json=[item("A1")], headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert session.scalar(select(func.count()).select_from(ServiceItem)) == 0


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ("{not json", "application/json", "not valid JSON"),
        ('{"external_id": "A1"}', "application/json", "array"),
        ("[]", "text/plain", "not valid JSON"),
    ],
)
def test_intake_answers_400_with_a_message_for_malformed_bodies(client, body, content_type, message):
    response = client.post(URL, data=body, content_type=content_type, headers=auth())
    assert response.status_code == 400
    assert message in response.get_json()["error"]


@pytest.mark.parametrize(
    ("source", "message"),
    [("s" * 65, "source: longer than 64 characters"), ("erp\x00", "source: contains a control character")],
    ids=["too-long", "nul"],
)
def test_intake_refuses_a_source_its_column_cannot_hold(client, session, source, message):
    response = client.post(URL, json=[item("A1")], headers=auth(), query_string={"source": source})
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert session.scalar(select(func.count()).select_from(ServiceItem)) == 0


def test_intake_refuses_a_batch_over_the_limit(client, settings):
    too_many = [item(f"A{i}") for i in range(settings.intake.max_batch + 1)]
    response = client.post(URL, json=too_many, headers=auth())
    assert response.status_code == 400
    assert "max_batch" in response.get_json()["error"]


def test_intake_gives_a_result_per_item_for_a_mixed_batch(client, session):
    batch = [
        item("A1"),
        item("A2", phone="400-123-4567"),
        "not an object",
        item("A3", completed_at="yesterday-ish"),
        item("A4", department=""),
    ]
    response = client.post(URL, json=batch, headers=auth())
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [r["status"] for r in results] == ["new", "error", "error", "error", "error"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert "phone" in results[1]["error"]
    assert "object" in results[2]["error"]
    assert "completed_at" in results[3]["error"]
    assert "department" in results[4]["error"]
    assert response.get_json()["summary"]["new"] == 1
    assert session.scalar(select(func.count()).select_from(ServiceItem)) == 1


def test_intake_reposting_updates_instead_of_duplicating(client, session):
    client.post(URL, json=[item("A1"), item("A2")], headers=auth())
    response = client.post(URL, json=[item("A1", matter="二手房转移登记"), item("A2")], headers=auth())
    assert [r["status"] for r in response.get_json()["results"]] == ["updated", "unchanged"]
    assert session.scalar(select(func.count()).select_from(ServiceItem)) == 2
    updated = session.scalars(select(ServiceItem).where(ServiceItem.external_id == "A1")).one()
    assert updated.matter == "二手房转移登记"
    assert updated.source == "api"


def test_openapi_document_describes_the_intake_endpoint(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    operation = doc["paths"]["/api/v1/service-items"]["post"]
    assert {"200", "400", "401"} <= set(operation["responses"])
    assert "phone" in doc["components"]["schemas"]["ServiceItem"]["required"]


def test_healthz_answers_without_the_database(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
