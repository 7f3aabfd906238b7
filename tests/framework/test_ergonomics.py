"""Fewer lines per IVR: the app's TTS voice (``App(voice=...)``), dependencies opened and
closed by ``App(lifespan=...)`` and reached as ``call.app.state``, ``async with App()``
for scripts, and a start-up that fails in one line."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from rtcontrol import (
    App,
    Call,
    Command,
    ConfigurationError,
    Flow,
    LiveCall,
    MemoryStore,
    StoreUnavailable,
    hangup,
    play,
    tts,
    wait,
)
from rtcontrol.emulator import Callee, Press, Transcript
from rtcontrol.media import DEFAULT_VOICE
from rtcontrol.testing import EmulatedPlatform, random_credentials

SPEED = 400.0
FR = "TTS_FR-FR_AUDREY"
#: Built at import time, outside any app: still spoken with the app's voice.
WELCOME = tts("Bienvenue")


def media(t: Transcript) -> list[Any]:
    return [
        (r.get("params") or {}).get("media_id")
        for r in t.replies
        if isinstance(r, dict) and r.get("command") in ("play", "read")
    ]


# ------------------------------------------------------------------------ the voice


class Greeter(Flow):
    name = "greeter"

    async def start(self, call: Call) -> Command:
        return play(WELCOME).then(self.named)

    async def named(self, call: Call) -> Command:
        return play(tts("Hello", "TTS_EN-GB_DANIEL")).then(self.built_here)

    async def built_here(self, call: Call) -> Command:
        return play(tts("Au revoir")).then(self.bye)

    async def bye(self, call: Call) -> Command:
        return hangup()


@pytest.mark.parametrize(("voice", "spoken"), [(FR, FR), (None, DEFAULT_VOICE)])
async def test_tts_without_a_voice_speaks_with_the_apps_voice(
    voice: str | None, spoken: str
) -> None:
    app = App(**random_credentials(), voice=voice)
    app.add_flow(Greeter, inbound=True)
    async with EmulatedPlatform(app, speed=SPEED) as p:
        t = await p.call(Callee())
    assert t.errors == [], t.render()
    assert media(t) == [
        f"TTS|{spoken}|Bienvenue",
        "TTS|TTS_EN-GB_DANIEL|Hello",  # a voice given to tts() is never replaced
        f"TTS|{spoken}|Au revoir",
    ]


async def test_straight_line_flows_and_ask_speak_with_the_apps_voice() -> None:
    app = App(**random_credentials(), voice=FR)

    @app.inbound_call
    async def menu(call: LiveCall) -> None:
        choice = await call.ask(
            tts("Tapez 1."), choices={"1": "ok"}, invalid=tts("Choix invalide.")
        )
        await call.play(tts(f"Choix {choice}"))

    async with EmulatedPlatform(app, speed=SPEED) as p:
        t = await p.call(Callee(actions=[Press("4"), Press("1")]))
    assert media(t) == [
        f"TTS|{FR}|Tapez 1.",
        f"TTS|{FR}|Choix invalide. Tapez 1.",
        f"TTS|{FR}|Choix ok",
    ]


def test_hold_and_fallback_take_the_voice_but_the_default_apology_stays_english() -> None:
    app = App(**random_credentials(), voice=FR, hold=play(tts("Un instant")))
    assert app.hold.params["media_id"] == f"TTS|{FR}|Un instant"
    assert app.fallback.params["media_id"].startswith(f"TTS|{DEFAULT_VOICE}|We are sorry")
    custom = App(**random_credentials(), voice=FR, fallback=play(tts("Désolé")))
    assert custom.fallback.params["media_id"] == f"TTS|{FR}|Désolé"


async def test_an_interrupts_command_takes_the_voice_before_it_is_stored() -> None:
    app = App(**random_credentials(), voice=FR)
    asked: list[Any] = []

    async def interrupt(callid: int, then: Any) -> bool:
        asked.append(then)
        return True

    app.engine.interrupt = interrupt  # type: ignore[method-assign]
    await app.interrupt(7, then=play(tts("Un agent est libre")))
    assert asked[0].params["media_id"] == f"TTS|{FR}|Un agent est libre"
    assert asked[0].checked
    await app.shutdown()


@pytest.mark.parametrize("voice", ["french", "TTS_fr-FR_AUDREY", 3])
def test_a_bad_voice_is_refused_when_the_app_is_built(voice: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        App(**random_credentials(), voice=voice)
    assert str(info.value) == (
        f"App: parameter 'voice' must be a voice name shaped TTS_LL-CC_NAME, got {voice!r}"
    )


# ------------------------------------------------------------ dependencies, lifespan


class Crm:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.open = False

    async def connect(self) -> None:
        await asyncio.sleep(0)
        self.open = True
        self.log.append("open")

    async def close(self) -> None:
        self.open = False
        self.log.append("close")

    def name(self, number: str) -> str:
        assert self.open, "used while closed"
        return "Ada" if number.endswith("78") else "?"


def crm_lifespan(log: list[str]) -> Any:
    @asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[dict[str, Any]]:
        crm = Crm(log)
        await crm.connect()
        app.state.crm = crm
        yield {"greeting": "Hello"}  # a mapping yielded lands in app.state too
        await crm.close()

    return lifespan


def crm_app(log: list[str], **kwargs: Any) -> App:
    app = App(**random_credentials(), lifespan=crm_lifespan(log), **kwargs)

    @app.on_inbound
    async def welcome(call: Call) -> Command:
        state = call.app.state  # type: ignore[attr-defined]
        log.append(f"handler:{state.greeting} {state.crm.name(call.cli_number)}")
        return hangup()

    return app


async def lifespan_messages(app: Any, *, shutdown: bool = True) -> list[str]:
    """Drive the ASGI lifespan as a server does; the message types the app sent."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[dict[str, Any]] = []
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"].startswith("lifespan.startup"):
            started.set()

    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, to_app.get, send)
    )
    await to_app.put({"type": "lifespan.startup"})
    await started.wait()
    if sent[-1]["type"] == "lifespan.startup.complete" and shutdown:
        await to_app.put({"type": "lifespan.shutdown"})
    await task
    return [m["type"] + (f": {m['message']}" if m.get("message") else "") for m in sent]


async def test_the_asgi_lifespan_opens_dependencies_before_serving_and_closes_them() -> None:
    log: list[str] = []
    app = crm_app(log)
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, to_app.get, from_app.put)
    )
    await to_app.put({"type": "lifespan.startup"})
    assert (await from_app.get())["type"] == "lifespan.startup.complete"
    assert log == ["open"]
    assert app.state.crm.open
    assert app.state.greeting == "Hello"
    await to_app.put({"type": "lifespan.shutdown"})
    assert (await from_app.get())["type"] == "lifespan.shutdown.complete"
    await task
    assert log == ["open", "close"]


async def test_handlers_reach_dependencies_through_call_app_state() -> None:
    log: list[str] = []
    app = crm_app(log)
    # The in-process test transport runs no lifespan: the first callback enters it.
    async with EmulatedPlatform(app, speed=SPEED) as p:
        t = await p.call(Callee(), cli_number="+33612345678")
    assert t.errors == [], t.render()
    assert log == ["open", "handler:Hello Ada", "close"]  # closed by the platform's shutdown


async def test_a_failing_lifespan_refuses_to_start_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[None]:
        raise RuntimeError("no database at db:5432")
        yield

    app = App(**random_credentials(), lifespan=lifespan)
    assert await lifespan_messages(app) == [
        "lifespan.startup.failed: cannot start: RuntimeError: no database at db:5432 "
        "(traceback logged above)"
    ]
    assert "no database" in caplog.text  # with the traceback of your code
    await app.shutdown()


async def test_an_unreachable_store_refuses_to_start_in_one_line() -> None:
    class DownStore(MemoryStore):
        async def ping(self) -> None:
            raise StoreUnavailable("redis ping: connection refused")

    log: list[str] = []
    app = crm_app(log, store=DownStore())
    assert await lifespan_messages(app) == [
        "lifespan.startup.failed: cannot start: the store is unreachable "
        "(StoreUnavailable: redis ping: connection refused); check RTCONTROL_STORE_URL"
    ]
    assert log == []  # your lifespan is not entered when the store is down


async def test_a_lifespan_without_its_decorator_is_refused_when_the_app_is_built() -> None:
    async def lifespan(app: App) -> AsyncIterator[None]:  # forgot @asynccontextmanager
        yield

    with pytest.raises(ConfigurationError) as info:
        App(**random_credentials(), lifespan=lifespan)  # type: ignore[arg-type]
    assert str(info.value) == (
        "lifespan test_a_lifespan_without_its_decorator_is_refused_when_the_app_is_built."
        "<locals>.lifespan must be a function taking the app and returning an async context "
        "manager: decorate your `async def lifespan(app)`, which yields once, with "
        "@contextlib.asynccontextmanager"
    )


async def test_a_lifespan_returning_something_else_is_named_when_entered() -> None:
    def lifespan(app: App) -> Any:
        return object()

    app = App(**random_credentials(), lifespan=lifespan)
    with pytest.raises(ConfigurationError, match=r"returned object, not an async context manager"):
        async with app:
            pass


# ------------------------------------------------------------------- async with App


async def test_async_with_app_opens_and_closes_everything_without_resource_warnings() -> None:
    from rtcontrol import CallrClient

    log: list[str] = []
    store = MemoryStore()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        async with App(
            **random_credentials(),
            lifespan=crm_lifespan(log),
            store=store,
            client=CallrClient(api_url="http://127.0.0.1:9/json", api_key="k"),
        ) as app:
            assert log == ["open"]
            assert app.state.crm.open
            client = app.client
        assert log == ["open", "close"]
        assert client._http.is_closed
        del app, client
        gc.collect()


async def test_async_with_app_closes_on_an_error_too() -> None:
    log: list[str] = []
    with pytest.raises(LookupError):
        async with App(**random_credentials(), lifespan=crm_lifespan(log)):
            raise LookupError("a script failed")
    assert log == ["open", "close"]


async def test_hold_keeps_working_with_wait() -> None:
    # A regression guard for the voice: a hold without TTS is the very same object.
    hold = wait(3)
    app = App(**random_credentials(), voice=FR, hold=hold)
    assert app.hold is hold
