"""HTTP Basic on the callback route (performance-and-reliability.md §4 A1-A5)."""

from __future__ import annotations

import base64
import hmac
import logging
from typing import Any

import httpx
import pytest

from rtcontrol import App, ConfigurationError, hangup
from rtcontrol.adapters import endpoint as rt_endpoint
from rtcontrol.store import MemoryStore
from rtcontrol.web import callback_router

from .conftest import LOGIN, PASSWORD, Counter, assert_refusal, basic, post, rt_request

B64 = base64.b64encode

#: Authorization headers that must all be refused with a 401 (A2).
WRONG = {
    "wrong user": basic("callr-ap", PASSWORD),
    "wrong password": basic(LOGIN, PASSWORD + "x"),
    "password prefix": basic(LOGIN, PASSWORD[:-1]),
    "password wrong case": basic(LOGIN, PASSWORD.lower()),
    "login wrong case": basic(LOGIN.upper(), PASSWORD),
    "empty password": basic(LOGIN, ""),
    "empty login": basic("", PASSWORD),
    "both empty": basic("", ""),
    "swapped": basic(PASSWORD, LOGIN),
    "colon moved": "Basic " + B64(f"{LOGIN}{PASSWORD[:1]}:{PASSWORD[1:]}".encode()).decode(),
    "no colon": "Basic " + B64(f"{LOGIN}{PASSWORD}".encode()).decode(),
    "extra colon": basic(LOGIN, PASSWORD + ":"),
    "invalid base64": "Basic !!!not*base64!!!",
    "base64 bad padding": "Basic " + B64(f"{LOGIN}:{PASSWORD}".encode()).decode().rstrip("=") + "=",
    "base64 with junk": basic(LOGIN, PASSWORD) + "$",
    "plain text credentials": f"Basic {LOGIN}:{PASSWORD}",
    "non-UTF-8 credentials": "Basic " + B64(b"\xff\xfe\x80:\xc3\x28\xa0").decode(),
    "non-UTF-8 around the right ones": "Basic "
    + B64(LOGIN.encode() + b"\xff:" + PASSWORD.encode()).decode(),
    "NUL bytes": "Basic " + B64(f"{LOGIN}\x00:{PASSWORD}".encode()).decode(),
    "scheme only": "Basic",
    "scheme and space": "Basic ",
    "empty header": "",
    "bearer": "Bearer x",
    "bearer with the right token": "Bearer " + B64(f"{LOGIN}:{PASSWORD}".encode()).decode(),
    "digest": f'Digest username="{LOGIN}", realm="rtcontrol"',
    "8 KB header": "Basic " + "A" * 8192,
    "8 KB of valid base64": basic(LOGIN, PASSWORD + "x" * 6000),
    "scheme glued": "Basic" + B64(f"{LOGIN}:{PASSWORD}".encode()).decode(),
    "misspelt scheme": basic(LOGIN, PASSWORD, scheme="Basics"),
}


async def test_no_credentials_is_challenged(
    client: httpx.AsyncClient, counter: Counter, app: App
) -> None:
    response = await post(client, rt_request(), auth=False)
    assert assert_refusal(response, 401) == "authentication required"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Basic ")
    assert 'realm="' in challenge
    assert counter.total == 0
    assert isinstance(app.store, MemoryStore)
    assert len(app.store) == 0  # the store was not touched


@pytest.mark.parametrize("header", WRONG.values(), ids=WRONG.keys())
async def test_wrong_credentials_are_refused(
    client: httpx.AsyncClient, counter: Counter, header: str
) -> None:
    response = await post(client, rt_request(), {"Authorization": header})
    assert_refusal(response, 401, markers=[PASSWORD, LOGIN])
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert counter.total == 0


@pytest.mark.parametrize(
    "header",
    [
        b"Basic \xff\xfe\xfd",  # raw non-ASCII bytes in the header itself
        b"\xc3\xa9 " + B64(f"{LOGIN}:{PASSWORD}".encode()),
        b"Basic " + B64(b"\xe9t\xe9:\xe9t\xe9"),  # latin-1 credentials
    ],
    ids=["raw bytes", "non-ASCII scheme", "latin-1 credentials"],
)
async def test_non_ascii_headers_are_refused(
    client: httpx.AsyncClient, counter: Counter, header: bytes
) -> None:
    response = await client.post(
        "/callback",
        content=b'{"callid": 1, "call_status": "UP"}',
        headers=[(b"authorization", header), (b"content-type", b"application/json")],
    )
    assert_refusal(response, 401)
    assert counter.total == 0


@pytest.mark.parametrize("scheme", ["Basic", "basic", "BASIC", "bAsIc"])
async def test_scheme_name_is_case_insensitive(
    client: httpx.AsyncClient, counter: Counter, scheme: str
) -> None:
    response = await post(client, rt_request(), {"Authorization": basic(LOGIN, PASSWORD, scheme)})
    assert response.status_code == 200
    assert counter.calls == ["inbound"]


async def test_surrounding_whitespace_in_the_credentials_is_tolerated(
    client: httpx.AsyncClient,
) -> None:
    header = "Basic   " + B64(f"{LOGIN}:{PASSWORD}".encode()).decode() + "  "
    response = await post(client, rt_request(), {"Authorization": header})
    assert response.status_code == 200


async def test_auth_is_checked_before_anything_else(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    """Unauthenticated requests learn nothing: not the content-type or size policy."""
    for content, ctype in [
        (b"x" * 200_000, "application/json"),
        (b"a=b", "application/x-www-form-urlencoded"),
        (b"{", "application/json"),
    ]:
        response = await post(client, content, {"Content-Type": ctype}, auth=False)
        assert_refusal(response, 401)
    assert counter.total == 0


async def test_utf8_credentials_are_accepted(counter: Counter) -> None:
    login, password = "opérateur", "mot de passe: 🔑 été"
    app = App(store=MemoryStore(), callback_login=login, callback_password=password)

    @app.on_inbound
    async def inbound(call: Any) -> Any:
        counter.hit("inbound", call)
        return hangup()

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app.asgi()), base_url="http://rt.test"
    ) as c:
        ok = await post(c, rt_request(), {"Authorization": basic(login, password)})
        latin1 = await post(
            c,
            rt_request(),
            {"Authorization": basic(login.encode("latin-1"), password.encode("utf-8"))},
        )
    assert ok.status_code == 200
    assert_refusal(latin1, 401)
    assert counter.total == 1


async def test_check_uses_compare_digest_on_both_fields(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A3: constant-time comparison of login and password, both always compared."""
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(rt_endpoint.hmac, "compare_digest", spy)
    cases = [
        (basic(LOGIN, PASSWORD), 200),
        (basic("x", PASSWORD), 401),  # login wrong: the password is still compared
        (basic(LOGIN, "y"), 401),
        (basic("x", "y"), 401),
    ]
    for header, status in cases:
        seen.clear()
        response = await post(client, rt_request(), {"Authorization": header})
        assert response.status_code == status
        assert len(seen) == 2, seen
        assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in seen)
        assert {b for _, b in seen} == {LOGIN.encode(), PASSWORD.encode()}


async def test_credentials_never_in_logs_or_responses(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A5: neither the header, nor its base64, nor the decoded secret is ever logged."""
    caplog.set_level(logging.DEBUG)
    secret = "Zq9-unique-secret-7741"
    headers = [
        basic(LOGIN, secret),
        basic(secret, PASSWORD),
        basic(LOGIN, PASSWORD),
        "Bearer " + secret,
        "Basic " + secret,
    ]
    texts: list[str] = []
    for header in headers:
        response = await post(client, rt_request(callid=7), {"Authorization": header})
        texts.append(response.text)
        texts.append(str(response.headers))
    # a handler error path too: the request is logged with its call id only
    forbidden = [secret, PASSWORD, B64(f"{LOGIN}:{PASSWORD}".encode()).decode()]
    forbidden += [h.split(" ", 1)[1] for h in headers if " " in h]
    logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    for text in [logged, *texts]:
        for item in forbidden:
            assert item not in text


async def test_credentials_not_in_error_logs_when_the_handler_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App(store=MemoryStore(), callback_login=LOGIN, callback_password=PASSWORD)

    @app.on_inbound
    async def broken(call: Any) -> Any:
        raise RuntimeError("boom")

    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app.asgi()), base_url="http://rt.test"
    ) as c:
        response = await post(c, rt_request())
    assert response.status_code == 200  # the fallback command
    assert any(r.levelno >= logging.ERROR for r in caplog.records)  # the failure is logged...
    logged = "\n".join(r.getMessage() + str(r.exc_text) for r in caplog.records)
    assert PASSWORD not in logged  # ...without the credentials
    assert B64(f"{LOGIN}:{PASSWORD}".encode()).decode() not in logged


# --------------------------------------------------------------------- configuration (A4)


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"callback_login": LOGIN},
        {"callback_password": PASSWORD},
        {"callback_login": "", "callback_password": ""},
        {"callback_login": LOGIN, "callback_password": ""},
    ],
    ids=["nothing", "login only", "password only", "both empty", "empty password"],
)
def test_app_without_credentials_refuses_to_build(settings: dict[str, str]) -> None:
    app = App(store=MemoryStore(), **settings)
    with pytest.raises(ConfigurationError) as info:
        app.asgi()
    message = str(info.value)
    assert "RTCONTROL_CALLBACK_LOGIN" in message
    assert "RTCONTROL_CALLBACK_PASSWORD" in message
    with pytest.raises(ConfigurationError):
        callback_router(app)


def test_half_configured_credentials_are_refused_even_with_the_opt_out() -> None:
    """A login without a password is a mistake, not a wish to run unprotected."""
    app = App(store=MemoryStore(), callback_login=LOGIN, allow_no_auth=True)
    with pytest.raises(ConfigurationError, match="RTCONTROL_CALLBACK_PASSWORD"):
        app.asgi()


def test_login_with_a_colon_is_refused() -> None:
    app = App(store=MemoryStore(), callback_login="a:b", callback_password=PASSWORD)
    with pytest.raises(ConfigurationError, match="':'"):
        app.asgi()


def test_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTCONTROL_CALLBACK_LOGIN", LOGIN)
    monkeypatch.setenv("RTCONTROL_CALLBACK_PASSWORD", PASSWORD)
    app = App(store=MemoryStore())
    assert app.asgi() is not None


async def test_explicit_opt_out_serves_without_auth_and_warns(
    caplog: pytest.LogCaptureFixture, counter: Counter
) -> None:
    caplog.set_level(logging.WARNING, logger="rtcontrol")
    app = App(store=MemoryStore(), allow_no_auth=True)

    @app.on_inbound
    async def inbound(call: Any) -> Any:
        counter.hit("inbound", call)
        return hangup()

    api = app.asgi()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "WITHOUT authentication" in warnings[0].getMessage()
    assert warnings[0].name == "rtcontrol.app"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url="http://rt.test"
    ) as c:
        response = await post(c, rt_request(), auth=False)
    assert response.status_code == 200
    assert counter.total == 1


def test_opt_out_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RTCONTROL_ALLOW_NO_AUTH", "1")
    caplog.set_level(logging.WARNING)
    App(store=MemoryStore()).asgi()
    assert any("WITHOUT authentication" in r.getMessage() for r in caplog.records)


def test_several_workers_with_the_memory_store_are_refused() -> None:
    app = App(store=MemoryStore(), callback_login=LOGIN, callback_password=PASSWORD, workers=2)
    with pytest.raises(ConfigurationError, match="memory store") as info:
        app.asgi()
    assert "RTCONTROL_STORE_URL" in str(info.value)


def test_several_workers_from_web_concurrency_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    app = App(store=MemoryStore(), callback_login=LOGIN, callback_password=PASSWORD)
    with pytest.raises(ConfigurationError, match="4 workers"):
        app.asgi()


def test_several_workers_with_a_shared_store_are_allowed() -> None:
    class SharedStore(MemoryStore):
        shared = True

    app = App(store=SharedStore(), callback_login=LOGIN, callback_password=PASSWORD, workers=3)
    assert app.asgi() is not None
