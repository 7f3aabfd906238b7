"""Customer survey, straight-line style: the twin of ``apps/survey.py``.

Same three questions, prompts, retries and stored results; the call is one ``async``
function that loops over the questions, and any worker can answer any callback (a
worker that does not hold the call's coroutine replays its journal).

Where the results are saved: in ``on_hangup``, as in the step style, from the answers
the flow keeps in ``call.state`` (saved with the call after every callback). It runs
exactly once per call, whatever ended it (the survey's own goodbye, a caller hanging
up mid-question, the fallback), on whichever worker got the HANGUP callback; if that
worker dies during it, another runs it again (the one case where it runs twice).

Not in a ``finally`` around the questions: a ``finally`` runs whenever a copy of the
coroutine ends, and a worker drops its copy of a call another worker moved on, one
evicted from its cache, or every copy at shutdown. Behind a round-robin proxy a call
leaves such copies behind on every worker, and each would save the survey again.
Not in ``call.once(...)`` either: it cannot run after the hang-up (the caller who
hangs up early would leave no record). ``except CallHungUp`` would catch only those
early hang-ups; ``on_hangup`` covers every ending in one place.

Serve it: ``SURVEY_RESULTS=surveys.jsonl uvicorn apps.survey_straight:app``
(framework settings from ``RTCONTROL_*`` variables; the callback credentials are
required).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from apps.survey import MAX_TRIES, QUESTIONS, Results
from rtcontrol import App, Call, LiveCall, tts

__all__ = ["MAX_TRIES", "QUESTIONS", "Results", "app", "build", "survey"]

INTRO = "Thank you for calling Example Corp. Please answer three questions."


async def survey(call: LiveCall) -> None:
    """Ask every question (up to ``MAX_TRIES`` times each), then thank the caller."""
    answers: dict[str, Any] = {}
    call.state["answers"] = answers  # what on_hangup saves, complete or not
    before = INTRO
    for question in QUESTIONS:
        tries = 0
        while True:
            prompt = tts(f"{before} {question.prompt}".strip())
            digits = await call.read(prompt, max_digits=1, attempts=1, timeout_ms=5000)
            if digits in question.choices:
                answers[question.key] = question.choices[digits]
                before = ""
                break
            tries += 1
            if tries >= MAX_TRIES:
                await call.play(tts("Sorry, we could not get your answer. Goodbye."))
                return
            before = "That is not a valid answer." if digits else "We did not hear you."
    await call.play(tts("Thank you for your answers. Goodbye."))


def build(*, results: Results | None = None, **settings: Any) -> App:
    app = App(**settings)
    sink = results if results is not None else Results.from_env()
    app.call_flow(survey, inbound=True)

    @app.on_hangup
    async def save(call: Call) -> None:
        answers = call.state.get("answers", {})
        await sink.add(
            {
                "callid": call.id,
                "caller": call.cli_number,
                "answers": answers,
                "complete": len(answers) == len(QUESTIONS),
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )

    return app


app = build()
