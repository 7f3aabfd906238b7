"""Schemathesis against the standalone app's own OpenAPI document (§4 B12).

Every operation is fuzzed with valid credentials, with schemathesis' default checks
(no server error, documented status codes, content types, headers and schemas,
negative data rejected, auth not ignored) except ``positive_data_acceptance``:
JSON Schema's ``integer`` admits ``1.0``, which the strict ``callid`` policy
refuses on purpose (test_body.py covers that policy). On top, a refusal of the
callback route is a fixed message and never follows a handler call.

``RTCONTROL_FUZZ_EXAMPLES`` raises the example count for a long run.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, positive_data_acceptance

from .conftest import AUTH, CALLBACK, Counter, assert_refusal, counting_app

EXAMPLES = int(os.environ.get("RTCONTROL_FUZZ_EXAMPLES", "50"))


# Built at import: schemathesis' lazy ``from_fixture`` schema does not work with
# pytest 9 (it sets ``request.node._nodeid``, which pytest 9 removed).
COUNTER = Counter()
API = counting_app(COUNTER).asgi()
schema = schemathesis.openapi.from_dict(API.openapi())
schema.app = API


@pytest.fixture
def fuzzed_api() -> FastAPI:
    return counting_app(Counter()).asgi()


def _as_httpx(response: Any) -> httpx.Response:
    """schemathesis' response (headers: name -> list of values) as an httpx one."""
    headers = [(name, value) for name, values in response.headers.items() for value in values]
    return httpx.Response(response.status_code, headers=headers, content=response.content)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation(case: Any) -> None:
    before = COUNTER.total
    response = case.call_and_validate(
        headers=AUTH,
        additional_checks=[not_a_server_error],
        excluded_checks=[positive_data_acceptance],
    )
    assert response.status_code < 500
    if case.path == CALLBACK and case.method.upper() == "POST" and response.status_code != 200:
        assert_refusal(_as_httpx(response), {400, 401, 413, 415, 422})
        assert COUNTER.total == before


@schema.parametrize()
@settings(max_examples=max(EXAMPLES // 4, 1), deadline=None)
def test_callback_without_credentials_is_always_401(case: Any) -> None:
    before = COUNTER.total
    response = case.call(headers={"Authorization": "Basic d3Jvbmc6d3Jvbmc="})
    case.validate_response(response, checks=[not_a_server_error])
    if case.path == CALLBACK and case.method.upper() == "POST":
        assert response.status_code == 401
        assert COUNTER.total == before


def test_document_is_self_contained_and_exact(fuzzed_api: FastAPI) -> None:
    """The schema resolves inside the document and states the exact callid bounds."""
    doc = fuzzed_api.openapi()
    text = repr(doc)
    assert "#/$defs/" not in text
    body = doc["paths"][CALLBACK]["post"]["requestBody"]["content"]["application/json"]
    callid = body["schema"]["properties"]["callid"]
    assert callid["minimum"] == 0
    assert callid["maximum"] == 2**64 - 1
    assert isinstance(callid["maximum"], int)
    assert body["schema"]["required"] == ["callid", "call_status"]
    operation = doc["paths"][CALLBACK]["post"]
    assert set(operation["responses"]) == {"200", "400", "401", "413", "415", "422"}
    assert operation["security"] == [{"callbackBasic": []}]
    assert doc["components"]["securitySchemes"]["callbackBasic"] == {
        "type": "http",
        "scheme": "basic",
    }
    assert set(doc["paths"]) == {CALLBACK, "/healthz", "/metrics"}
    assert fuzzed_api.openapi() is doc  # generated once


async def test_served_document_is_api_openapi(fuzzed_api: FastAPI) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fuzzed_api), base_url="http://rt.test"
    ) as c:
        response = await c.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == fuzzed_api.openapi()
