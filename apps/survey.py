"""Customer survey: three questions answered on the keypad, stored when the call ends.

Shows a flow that loops over data (one ``ask``/``answer`` pair for every question),
validation with re-asking, answers kept in ``call.state`` while the call runs, and
``on_hangup`` as the one place results are saved: complete surveys and the partial
answers of callers who hang up early alike.

Results go to a :class:`Results` sink: a list in memory, plus one JSON line per call
appended to the file named by ``SURVEY_RESULTS`` when it is set.

Serve it: ``SURVEY_RESULTS=surveys.jsonl uvicorn apps.survey:app`` (framework settings
from ``RTCONTROL_*`` variables; the callback credentials are required).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apps.sink import JsonLines
from rtcontrol import App, Call, Command, Flow, hangup, play, read, tts

#: Wrong or missing answers to one question before the survey ends.
MAX_TRIES = 3


@dataclass(frozen=True)
class Question:
    key: str
    prompt: str
    choices: dict[str, Any]  # key pressed -> answer stored


YES_NO = {"1": "yes", "2": "no"}
QUESTIONS = (
    Question(
        "rating",
        "How satisfied are you with our service? Press a key from 1 to 5, 5 being the best.",
        {str(n): n for n in range(1, 6)},
    ),
    Question("recommend", "Would you recommend us to a friend? Press 1 for yes, 2 for no.", YES_NO),
    Question("callback", "Should an advisor call you back? Press 1 for yes, 2 for no.", YES_NO),
)


class Results(JsonLines):
    """Finished surveys (``SURVEY_RESULTS``: a JSON-lines file)."""

    ENV = "SURVEY_RESULTS"


class Survey(Flow):
    name = "survey"

    def __init__(self, results: Results) -> None:
        self.results = results

    def ask(self, call: Call, before: str = "") -> Command:
        question = QUESTIONS[call.state["question"]]
        prompt = tts(f"{before} {question.prompt}".strip())
        return read(prompt, max_digits=1, attempts=1, timeout_ms=5000).then(self.answer)

    async def start(self, call: Call) -> Command:
        call.state.update(question=0, tries=0, answers={})
        return self.ask(call, "Thank you for calling Example Corp. Please answer three questions.")

    async def answer(self, call: Call) -> Command:
        question = QUESTIONS[call.state["question"]]
        if call.digits in question.choices:
            call.state["answers"][question.key] = question.choices[call.digits]
            call.state.update(question=call.state["question"] + 1, tries=0)
            if call.state["question"] == len(QUESTIONS):
                return play(tts("Thank you for your answers. Goodbye.")).then(self.goodbye)
            return self.ask(call)
        call.state["tries"] += 1
        if call.state["tries"] >= MAX_TRIES:
            return play(tts("Sorry, we could not get your answer. Goodbye.")).then(self.goodbye)
        again = "That is not a valid answer." if call.digits else "We did not hear you."
        return self.ask(call, again)

    async def goodbye(self, call: Call) -> Command:
        return hangup()

    async def on_hangup(self, call: Call) -> None:
        answers = call.state.get("answers", {})
        await self.results.add(
            {
                "callid": call.id,
                "caller": call.cli_number,
                "answers": answers,
                "complete": len(answers) == len(QUESTIONS),
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )


def build(*, results: Results | None = None, **settings: Any) -> App:
    app = App(**settings)
    app.add_flow(Survey(results if results is not None else Results.from_env()), inbound=True)
    return app


app = build()
