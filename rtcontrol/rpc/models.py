"""Typed options and results of the CALLR JSON-RPC methods rtcontrol uses.

The option models raise :class:`~rtcontrol.errors.CommandError` rather than pydantic's
``ValidationError``, so a bad ``cli`` typed by a user lands in the one exception tree
with the method and parameter named. ``model_validate`` still raises ``ValidationError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from ..errors import CommandError
from ..media import E164

__all__ = [
    "REALTIME10",
    "AppInfo",
    "BroadcastOptions",
    "RealtimeAppParams",
    "RealtimeOptions",
    "allowed_phrase",
    "command_error",
]

#: The app type (``package.name``) of real-time apps; the only type this client manages.
REALTIME10 = "REALTIME10"

_CDR_FIELD = re.compile(r"[A-Za-z0-9]{0,32}")
#: Broadcast ``loop`` bound: the platform's range is UNKNOWN (spec §4.3); 10 keeps a typo cheap.
LOOP_MAX = 10


#: Whole pydantic messages that do not read after "must be", reworded.
_REWORDED = {
    "Field required": "given (it is required)",
    "Extra inputs are not permitted": "left out (not a known field)",
}
#: "<Kind> should have ..." / "<Kind> should match ..." -> "a <kind> with ..." / "matching".
_SHOULD = re.compile(r"(?P<kind>[A-Z][a-z]*) should (?P<verb>have|match) (?P<rest>.*)", re.S)


def allowed_phrase(message: str) -> str:
    """A validation message reworded to follow ``CommandError``'s "must be".

    ``CommandError`` says "parameter X must be <allowed>"; validators and pydantic state
    full reasons ("must be an E.164 number", "Input should be a valid integer", "Field
    required"), so the reason is stripped of what repeats the prefix and reworded where
    it would not read: never "must be must be", never "must be Field required".
    """
    text = message.removeprefix("Value error, ").removeprefix("Assertion failed, ").strip()
    if text in _REWORDED:
        return _REWORDED[text]
    for prefix in ("Input should be ", "must be ", "Must be ", "should be ", "be "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    if match := _SHOULD.fullmatch(text):
        kind = match["kind"].lower()
        article = "an" if kind[:1] in "aeiou" else "a"
        verb = "with" if match["verb"] == "have" else "matching"
        return f"{article} {kind} {verb} {match['rest']}"
    if not text[:1].isupper():  # already a phrase ("up to 32 letters or digits")
        return text or "valid"
    return f"valid ({text[:1].lower()}{text[1:]})"  # a sentence of pydantic's


def command_error(command: str, exc: ValidationError, prefix: str = "") -> CommandError:
    """The first pydantic error as a CommandError naming ``prefix.field``."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"])
    param = f"{prefix}.{field}" if prefix and field else prefix or field
    return CommandError(command, param, allowed_phrase(first["msg"]), first.get("input"))


@contextmanager
def _as_command_error(command: str, prefix: str) -> Iterator[None]:
    try:
        yield
    except ValidationError as exc:
        raise command_error(command, exc, prefix) from None


class _CallOptions(BaseModel):
    """Fields shared by both call option objects (spec §4.2, §4.3)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cdr_field: StrictStr = ""
    cli: StrictStr = "BLOCKED"

    @field_validator("cdr_field")
    @classmethod
    def _cdr(cls, value: str) -> str:
        if not _CDR_FIELD.fullmatch(value):
            raise ValueError("up to 32 letters or digits")
        return value

    @field_validator("cli")
    @classmethod
    def _cli(cls, value: str) -> str:
        if value != "BLOCKED" and not E164.fullmatch(value):
            raise ValueError('"BLOCKED" or an E.164 number such as +33123456789')
        return value


class RealtimeOptions(_CallOptions):
    """``REALTIME10.Call.Options`` of ``calls.realtime``: caller id and custom CDR field.

    ``cdr_field`` comes back in every callback of the call, so it can carry a short key.
    """

    def __init__(self, *, cdr_field: str = "", cli: str = "BLOCKED") -> None:
        with _as_command_error("calls.realtime", "options"):
            super().__init__(cdr_field=cdr_field, cli=cli)


class BroadcastOptions(_CallOptions):
    """``Calls.Broadcast1.Options``; ``loop`` is how many times the message list plays.

    A sibling of :class:`RealtimeOptions`, not a subclass, so ``loop`` can never be
    sent to ``calls.realtime`` by accident.
    """

    loop: Annotated[StrictInt, Field(ge=1, le=LOOP_MAX)] = 1

    def __init__(self, *, cdr_field: str = "", cli: str = "BLOCKED", loop: int = 1) -> None:
        with _as_command_error("calls.broadcast_1", "options"):
            BaseModel.__init__(self, cdr_field=cdr_field, cli=cli, loop=loop)


class RealtimeAppParams(BaseModel):
    """The ``params`` object of a REALTIME10 app (``apps.create`` / ``apps.edit``).

    ``login``/``password`` are the HTTP Basic credentials the platform sends to the
    callback; ``password`` is hidden from ``repr`` so it never reaches a log line.
    ``None`` fields are left out of the wire object, meaning "unchanged" for ``apps.edit``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: StrictStr | None = None
    login: StrictStr | None = None
    password: StrictStr | None = Field(default=None, repr=False)
    data_format: Literal["JSON"] = "JSON"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            parts = urlsplit(value)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError("an http:// or https:// URL with a host")
        return value

    def to_wire(self) -> dict[str, str]:
        """The JSON object sent to the API, without the unset fields."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


def _text(value: Any) -> Any:
    return "" if value is None else value


Text = Annotated[StrictStr, BeforeValidator(_text)]


class AppInfo(BaseModel):
    """A Voice App as ``apps.*`` return it, flattened (``package.name`` -> ``type``, ``p.*``).

    Tolerant: unknown fields are ignored and ``null`` strings read as ``""``, because
    the App object is only partly documented (spec §3.6).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    hash: StrictStr = Field(min_length=1)
    name: Text = ""
    type: Text = ""
    url: Text = ""
    login: Text = ""
    password: Text = Field(default="", repr=False)
    data_format: Text = ""
    date_creation: Text = ""
    date_update: Text = ""

    @model_validator(mode="before")
    @classmethod
    def _flatten(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        flat = {k: v for k, v in data.items() if k not in ("package", "p")}
        package = data.get("package")
        if isinstance(package, Mapping):
            flat.setdefault("type", package.get("name") or package.get("type"))
        params = data.get("p")
        if isinstance(params, Mapping):
            for key in ("url", "login", "password", "data_format"):
                flat.setdefault(key, params.get(key))
        return flat

    @property
    def is_realtime(self) -> bool:
        """Only REALTIME10 apps can drive calls with ``calls.realtime``."""
        return self.type == REALTIME10
