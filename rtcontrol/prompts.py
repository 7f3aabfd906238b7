"""Asking with retries: the menu loop every IVR writes, in one call.

Ask a question, accept a set of answers, say why and ask again on a wrong key or on
silence, up to ``tries`` times, then go on with the answer (``None`` when there was
none). Both styles read the same:

Straight-line (:meth:`rtcontrol.LiveCall.ask`)::

    number = await call.ask(
        tts("Press 1 for sales, 2 for support."),
        choices={"1": "+33100000001", "2": "+33100000002"},
        invalid=tts("That is not a valid choice."),
        silence=tts("We did not hear you."),
    )
    if number is None:  # three tries without a valid key
        await call.play(tts("Goodbye."))

Step style (:func:`ask`, then :func:`answer` in the next step)::

    async def start(self, call: Call) -> Command:
        return ask(call, tts("Press 1 for sales, 2 for support."),
                   choices=AGENTS, invalid=tts("That is not a valid choice.")).then(self.chosen)

    async def chosen(self, call: Call) -> Command:
        number = answer(call)  # the value of the key pressed, or None
        return dialout(number) if number else play(tts("Goodbye."))

Each try is one ``read`` (``attempts=1``; ``max_digits`` is the longest key). Before a
new try, ``invalid`` (a key that is not a choice) or ``silence`` (nothing typed) is
said: in the same ``read`` when both it and the prompt are TTS with the same voice
(their texts joined), else as a ``play`` first.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .commands import Command, play, read
from .errors import CommandError, FlowError, OutputError
from .media import TTS_MAX_CHARS, AppVoiceTTS, Media, check_media
from .validate import encode_json

if TYPE_CHECKING:
    from .core.call import Call

__all__ = ["ASK_KEY", "ASK_STEP", "MAX_TRIES", "Ask", "Question", "answer", "ask", "ask_step"]

#: The built-in step that receives the result of each try of a step-style :func:`ask`.
ASK_STEP = "@ask"
#: The ``call.state`` key :func:`ask` keeps its question in (and then its answer): reserved.
ASK_KEY = "rtcontrol.ask"
#: Most tries one question may take.
MAX_TRIES = 10

_KEY = re.compile(r"[0-9*#]{1,20}")


@dataclass(frozen=True, slots=True)
class Question:
    """A checked question: what to say, which keys answer it, how many tries."""

    prompt: Media
    choices: Mapping[str, Any]
    tries: int
    invalid: Media | None
    silence: Media | None
    timeout_ms: int

    def first(self) -> list[Command]:
        """The commands of the first try (one ``read``)."""
        return [self.read(self.prompt)]

    def retry(self, digits: str | None) -> list[Command]:
        """The commands of the next try after ``digits`` (None: nothing typed) were not
        an answer: ``[read]`` or ``[play(reason), read]``."""
        reason = self.silence if digits is None else self.invalid
        if reason is None:
            return [self.read(self.prompt)]
        joined = _join(reason, self.prompt)
        if joined is not None:
            return [self.read(joined)]
        return [play(reason), self.read(self.prompt)]

    def read(self, media: Media) -> Command:
        """One try: ``read(media)`` for one key of ``choices``."""
        width = max(len(key) for key in self.choices)
        return read(media, max_digits=width, attempts=1, timeout_ms=self.timeout_ms)

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "choices": dict(self.choices),
            "tries": self.tries,
            "invalid": self.invalid,
            "silence": self.silence,
            "timeout_ms": self.timeout_ms,
            "app_voice": [
                name
                for name in ("prompt", "invalid", "silence")
                if isinstance(getattr(self, name), AppVoiceTTS)
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Question:
        marked = set(data.get("app_voice", ()))

        def media(name: str) -> Any:
            value = data[name]
            return AppVoiceTTS(value) if name in marked and isinstance(value, str) else value

        return cls(
            media("prompt"),
            dict(data["choices"]),
            int(data["tries"]),
            media("invalid"),
            media("silence"),
            int(data["timeout_ms"]),
        )


def question(
    prompt: Media,
    choices: Mapping[str, Any],
    *,
    tries: int,
    invalid: Media | None,
    silence: Media | None,
    timeout_ms: int,
    stored: bool,
) -> Question:
    """Check a question's parts (CommandError, naming ``ask``); ``stored``: the choices'
    values are kept in ``call.state`` and must be JSON."""
    prompt = check_media("ask", "prompt", prompt)
    if not isinstance(choices, Mapping) or not choices:
        raise CommandError(
            "ask", "choices", 'a non-empty dict of keys to values {"1": ...}', choices
        )
    for key, value in choices.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise CommandError("ask", "choices", "keys of 1-20 digits, '*' or '#'", key)
        if value is None:
            raise CommandError(
                "ask",
                "choices",
                f"values other than None (None means no answer; key {key!r})",
                value,
            )
    if stored:
        try:
            encode_json(dict(choices), "ask() choices")
        except OutputError:
            raise CommandError(
                "ask",
                "choices",
                "JSON values in the step style (they are kept in call.state): str, int, "
                "float, bool, list or dict",
                choices,
            ) from None
    if isinstance(tries, bool) or not isinstance(tries, int) or not 1 <= tries <= MAX_TRIES:
        raise CommandError("ask", "tries", f"an integer 1..{MAX_TRIES}", tries)
    for name, media in (("invalid", invalid), ("silence", silence)):
        if media is not None:
            check_media("ask", name, media)
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int):
        raise CommandError("ask", "timeout_ms", "an integer 100..30000", timeout_ms)
    if not 100 <= timeout_ms <= 30_000:
        raise CommandError("ask", "timeout_ms", "an integer 100..30000", timeout_ms)
    return Question(prompt, dict(choices), tries, invalid, silence, timeout_ms)


def _join(first: Media, second: Media) -> str | None:
    """One TTS saying ``first`` then ``second``, when both are TTS of the same voice
    (both the app's, or both the same named voice) and the text fits; else None."""
    if not (isinstance(first, str) and isinstance(second, str)):
        return None
    if isinstance(first, AppVoiceTTS) != isinstance(second, AppVoiceTTS):
        return None
    head, sep, text1 = first.rpartition("|")
    head2, sep2, text2 = second.rpartition("|")
    if not (sep and sep2) or head != head2:
        return None
    text = f"{text1.rstrip()} {text2.lstrip()}"
    if len(text) > TTS_MAX_CHARS:
        return None
    joined = f"{head}|{text}"
    return AppVoiceTTS(joined) if isinstance(first, AppVoiceTTS) else joined


# --------------------------------------------------------------------------- step style


class Ask(Command):
    """The first ``read`` of a step-style question. ``.then(step)`` names the step that
    gets the answer (read it there with :func:`answer`); every try reports to the
    built-in step ``@ask`` meanwhile."""

    def then(self, step: str | Callable[..., Any]) -> Command:
        name = Command("read").then(step).step  # the same check as Command.then
        spec: dict[str, Any] = self.__dict__["_spec"]
        spec["then"] = name
        return self


def ask(
    call: Call,
    prompt: Media,
    *,
    choices: Mapping[str, Any],
    tries: int = 3,
    invalid: Media | None = None,
    silence: Media | None = None,
    timeout_ms: int = 5000,
) -> Ask:
    """Ask ``prompt`` until a key of ``choices`` is pressed, at most ``tries`` times (1-10);
    return the first ``read``, to send with ``.then(step)``.

    ``choices``: keys (1-20 of ``0-9*#``) to values (JSON, not None: they are kept in
    ``call.state``). ``invalid`` / ``silence``: media said before the next try after a
    key that is not a choice / nothing typed (default: the prompt alone again).
    ``timeout_ms``: how long each try waits for a key (100..30000). ``step`` then runs
    once, with ``answer(call)`` the value of the key pressed, or None after the last
    try (or when the question was interrupted). The question is kept in
    ``call.state["rtcontrol.ask"]`` meanwhile (the key is reserved), and its answer
    after. Raises CommandError for a bad part, TypeError for a straight-line call.
    """
    from .core.call import Call

    if not isinstance(call, Call):
        raise TypeError(
            "ask(call, ...) takes the Call of a step; in a straight-line flow write "
            "`value = await call.ask(prompt, choices=...)`"
        )
    q = question(
        prompt,
        choices,
        tries=tries,
        invalid=invalid,
        silence=silence,
        timeout_ms=timeout_ms,
        stored=True,
    )
    spec: dict[str, Any] = {**q.to_json(), "try": 1, "saying": False, "then": None}
    call.state[ASK_KEY] = {"ask": spec}
    return _bind(q.first()[0], spec)


def answer(call: Call) -> Any:
    """The answer of the last :func:`ask` of this call that ended: the value of the key
    pressed, or None (no valid key after the last try, interrupted, or no question)."""
    kept = call.state.get(ASK_KEY)
    return kept.get("answer") if isinstance(kept, dict) else None


def _bind(command: Command, spec: dict[str, Any]) -> Ask:
    bound: Ask = object.__new__(Ask)
    bound.__dict__.update(command.__dict__)
    bound.__dict__["step"] = ASK_STEP
    bound.__dict__["_spec"] = spec
    return bound


def _to_ask(command: Command) -> Command:
    bound = object.__new__(Command)
    bound.__dict__.update(command.__dict__)
    bound.__dict__["step"] = ASK_STEP
    return bound


Handler = Callable[["Call"], Awaitable[Any]]


def ask_step(flow: str, lookup: Callable[[str], Handler | None]) -> Handler:
    """The ``@ask`` step of the flow ``flow``: checks each try, asks again, and runs the
    step given to ``.then(...)`` with the answer (``lookup`` finds it by name)."""

    async def run(call: Call) -> Any:
        kept = call.state.get(ASK_KEY)
        spec = kept.get("ask") if isinstance(kept, dict) else None
        if not isinstance(spec, dict):
            raise FlowError(
                f"flow {flow}: a result came back to ask(), but call.state[{ASK_KEY!r}] no "
                "longer holds its question: leave that key to ask()"
            )
        q = Question.from_json(spec)
        if spec.get("saying"):  # the reason was played: now the prompt
            spec["saying"] = False
            return _to_ask(q.read(q.prompt))
        digits = call.digits
        if digits is not None and digits in q.choices:
            return await _finish(call, spec, q.choices[digits])
        if spec["try"] >= q.tries or call.interrupted:
            return await _finish(call, spec, None)
        spec["try"] += 1
        commands = q.retry(digits or None)
        spec["saying"] = len(commands) > 1
        return _to_ask(commands[0])

    async def _finish(call: Call, spec: dict[str, Any], value: Any) -> Any:
        then = spec.get("then")
        if not isinstance(then, str):
            raise FlowError(
                f"flow {flow}: ask() was sent without .then(step), so its answer has nowhere "
                "to go: return `ask(call, ...).then(self.next_step)` (or `.then(next_step)` "
                "in function style)"
            )
        handler = lookup(then)
        if handler is None:
            raise FlowError(f"flow {flow}: ask(...).then({then!r}): the flow has no such step")
        call.state[ASK_KEY] = {"answer": value}
        call.step = then
        return await handler(call)

    run.__name__ = run.__qualname__ = "ask"
    return run
