"""apps/survey.py and its straight-line twin apps/survey_straight.py: whole calls
through the emulator, and what the survey stores.

Every test runs on both modules (the ``twin`` fixture): the twins must send the same
commands, say the same texts and store the same results.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import pytest_asyncio
from app_kit import (
    CALLER,
    SPEED,
    assert_ended,
    params,
    results,
    said,
    startup_messages,
    without_credentials,
)

from apps.survey import MAX_TRIES, QUESTIONS, Results
from rtcontrol.emulator import Callee, HangUp, Press, Silence, Transcript
from rtcontrol.testing import EmulatedPlatform, random_credentials

#: Tests that place their calls on the module's shared ``http`` platform run in its loop.
shared = pytest.mark.asyncio(loop_scope="module")
INTRO = "Thank you for calling Example Corp. Please answer three questions. "


TWINS = ["apps.survey", "apps.survey_straight"]


@pytest.fixture(scope="module", params=TWINS)
def twin(request: pytest.FixtureRequest) -> ModuleType:
    """The survey module under test: the step-style one, then its straight-line twin."""
    return importlib.import_module(request.param)


@pytest.fixture(scope="module")
def surveys(twin: ModuleType) -> Results:
    return Results()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(twin: ModuleType, surveys: Results) -> AsyncIterator[EmulatedPlatform]:
    """One app and one emulator over loopback HTTP, shared by the module's calls."""
    app = twin.build(results=surveys, **random_credentials())
    async with EmulatedPlatform(app, over="http", speed=SPEED) as p:
        yield p


async def stored(p: EmulatedPlatform, surveys: Results, t: Transcript) -> dict[str, Any]:
    """The one record saved for this call, once ``on_hangup`` has run (it runs after
    the reply to the hang-up: wait for the app to settle)."""
    await p.app.settle()
    [record] = [r for r in surveys.records if r["callid"] == t.callid]
    return record


def test_the_twins_share_questions_and_sink(twin: ModuleType) -> None:
    assert twin.QUESTIONS is QUESTIONS
    assert twin.MAX_TRIES == MAX_TRIES
    assert twin.Results is Results
    straight = twin.build(**random_credentials()).flow_spec("survey").script is not None
    assert straight == twin.__name__.endswith("_straight")


@shared
async def test_three_answers_are_stored_and_the_caller_thanked(
    http: EmulatedPlatform, surveys: Results
) -> None:
    t = await http.call(Callee(actions=[Press("4"), Press("1"), Press("2")]), cli_number=CALLER)
    assert t.executed == ["read", "read", "read", "play", "hangup"]
    assert said(t) == [
        INTRO + QUESTIONS[0].prompt,
        QUESTIONS[1].prompt,
        QUESTIONS[2].prompt,
        "Thank you for your answers. Goodbye.",
    ]
    assert all(p["max_digits"] == 1 and p["attempts"] == 1 for p in params(t, "read"))
    assert results(t, "read") == ["4", "1", "2"]
    assert_ended(t, "app")
    record = await stored(http, surveys, t)
    assert record["caller"] == CALLER
    assert record["answers"] == {"rating": 4, "recommend": "yes", "callback": "no"}
    assert record["complete"] is True


@shared
async def test_invalid_keys_and_silence_are_asked_again(
    http: EmulatedPlatform, surveys: Results
) -> None:
    keys = [Press("7"), Silence(), Press("5"), Press("3"), Press("2"), Press("0"), Press("1")]
    t = await http.call(Callee(actions=keys))
    assert t.executed == ["read"] * 7 + ["play", "hangup"]
    assert results(t, "read") == ["7", "TIMEOUT", "5", "3", "2", "0", "1"]
    prompts = said(t)
    assert prompts[1] == "That is not a valid answer. " + QUESTIONS[0].prompt
    assert prompts[2] == "We did not hear you. " + QUESTIONS[0].prompt
    assert prompts[4] == "That is not a valid answer. " + QUESTIONS[1].prompt
    assert prompts[6] == "That is not a valid answer. " + QUESTIONS[2].prompt
    assert_ended(t, "app")
    record = await stored(http, surveys, t)
    assert record["answers"] == {"rating": 5, "recommend": "no", "callback": "yes"}
    assert record["complete"] is True


@shared
async def test_three_failures_on_one_question_end_with_partial_answers(
    http: EmulatedPlatform, surveys: Results
) -> None:
    # "#" alone is an empty entry: the read times out
    t = await http.call(Callee(actions=[Press("3"), Press("9"), Silence(), Press("#")]))
    assert t.executed == ["read"] + ["read"] * MAX_TRIES + ["play", "hangup"]
    assert results(t, "read") == ["3", "9", "TIMEOUT", "TIMEOUT"]
    assert said(t)[-1] == "Sorry, we could not get your answer. Goodbye."
    assert_ended(t, "app")
    record = await stored(http, surveys, t)
    assert record["answers"] == {"rating": 3}
    assert record["complete"] is False


@shared
async def test_a_caller_hanging_up_early_leaves_partial_answers(
    http: EmulatedPlatform, surveys: Results
) -> None:
    t = await http.call(Callee(actions=[Press("5"), Press("1"), HangUp(after=2.0)]))
    assert t.executed == ["read", "read", "read"]
    assert_ended(t, "callee")
    record = await stored(http, surveys, t)
    assert record["answers"] == {"rating": 5, "recommend": "yes"}
    assert record["complete"] is False


async def test_a_caller_hanging_up_at_once_is_stored_with_no_answers(twin: ModuleType) -> None:
    surveys = Results()
    app = twin.build(results=surveys, **random_credentials())
    async with EmulatedPlatform(app, over="asgi", speed=SPEED) as p:
        t = await p.call(Callee(actions=[HangUp(after=0.5)]))
        assert surveys.records == [await stored(p, surveys, t)]
    assert_ended(t, "callee")
    assert surveys.records[0]["answers"] == {}
    assert surveys.records[0]["complete"] is False


async def test_results_go_to_the_jsonl_file_named_by_survey_results(
    twin: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "surveys.jsonl"
    monkeypatch.setenv("SURVEY_RESULTS", str(path))
    app = twin.build(**random_credentials())  # the sink comes from the environment
    callers = [Callee(actions=[Press("2"), Press("2"), Press("2")]), Callee(actions=[Press("5")])]
    async with EmulatedPlatform(app, over="asgi", speed=SPEED) as p:
        for caller in callers:
            assert_ended(await p.call(caller, cli_number=CALLER), "app")
            await app.settle()  # each call's line written before the next call
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [line["answers"] for line in lines] == [
        {"rating": 2, "recommend": "no", "callback": "no"},
        {"rating": 5},  # then silence, three times
    ]
    assert [line["complete"] for line in lines] == [True, False]
    assert {line["caller"] for line in lines} == {CALLER}


async def test_refuses_to_start_without_credentials(
    twin: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_credentials(monkeypatch)
    [failed] = await startup_messages(twin.build())
    assert failed["type"] == "lifespan.startup.failed"
    assert "RTCONTROL_CALLBACK_PASSWORD" in failed["message"]
