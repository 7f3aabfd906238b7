"""Settings, read from ``RTCONTROL_*`` environment variables or passed in code.

Each field documents its variable. Values given to ``App(...)`` win over the
environment, so tests never depend on the machine they run on.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigurationError

__all__ = ["Settings", "settings_table"]

_ENV = "RTCONTROL_"

settings_log = logging.getLogger("rtcontrol.settings")


class Settings(BaseModel):
    """Framework settings. ``Settings.from_env(**overrides)`` reads the environment."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    callback_login: str | None = None
    """HTTP Basic login of the callback route: the REALTIME10 app's ``login`` (required, or
    ``RTCONTROL_ALLOW_NO_AUTH``)."""
    callback_password: str | None = Field(default=None, repr=False)
    """HTTP Basic password of the callback route: the REALTIME10 app's ``password``."""
    allow_no_auth: bool = False
    """serves the callback route without credentials (logged as a warning). Only for local
    experiments."""
    store_url: str = "memory://"
    """``memory://`` (one process), ``redis://host:port/db`` (several workers or hosts) or
    ``redis+cluster://host:port,host:port`` (Redis Cluster)."""
    app_hash: str | None = None
    """the REALTIME10 app used by ``start_call`` when none is given."""
    handler_budget: float = Field(default=4.0, gt=0, le=4.9)
    """seconds from receiving a callback until its reply is ready, store round trips included;
    past it the caller is put on hold. The platform allows 5 s per reply, minus network time."""
    hangup_budget: float = Field(default=30.0, gt=0)
    """seconds ``on_hangup`` may run. It runs after the reply to the HANGUP callback has been
    sent, so no caller waits for it."""
    lock_lease: float = Field(default=1.0, ge=0.2, le=30.0)
    """seconds a per-call lock lives without being renewed. The holder renews it while it
    works, so a crashed worker blocks its call this long."""
    store_timeout: float = Field(default=1.0, gt=0)
    """seconds one store round trip may take once connected (also ``?timeout=`` in the store
    URL)."""
    store_connect_timeout: float = Field(default=2.0, gt=0)
    """seconds allowed to open a store connection, counted apart from the round trip (also
    ``?connect_timeout=`` in the store URL)."""
    request_start: bool = True
    """count the handler budget from the proxy's ``X-Request-Start: t=<epoch seconds>``
    header (nginx: ``proxy_set_header X-Request-Start "t=${msec}"``) when present, so a
    callback passed on from a worker that died is not answered late. The proxy's and
    the workers' clocks must agree; values outside the budget are ignored."""
    blocking_warn: float = Field(default=0.2, ge=0)
    """a handler that keeps the event loop busy this many seconds without awaiting is logged as
    blocking (0 turns the check off)."""
    lock_wait: float = Field(default=1.5, gt=0)
    """seconds a callback waits for its call's lock (held by a duplicate, an interrupt, or a
    crashed worker until its lease ends) before the caller is put on a short hold and the
    callback is replayed."""
    background_timeout: float = Field(default=60.0, gt=0)
    """seconds a slow handler may keep running behind a hold before the call gets the fallback
    command."""
    call_ttl: float = Field(default=6 * 3600.0, gt=0)
    """seconds a call's state is kept after its last callback."""
    ended_ttl: float = Field(default=600.0, gt=0)
    """seconds an ended call is remembered, to answer late duplicates."""
    max_body: int = Field(default=64 * 1024, ge=1024)
    """largest callback body accepted, in bytes (413 above)."""
    break_timeout: float = Field(default=2.0, gt=0)
    """seconds allowed for one ``calls.realtime_break``."""
    outbound_bind_wait: float = Field(default=30.0, ge=0)
    """seconds the first callback of an outbound call may wait, across holds, for
    ``start_call`` to record its flow and data (the platform may call back before
    ``calls.realtime`` has returned the request hash to us). Only calls that can still be bound
    wait: a ``start_call`` is in flight."""
    max_replays: int = Field(default=10, ge=0)
    """holds given in a row while the store is unreachable before the call gets the fallback
    command."""
    journal_limit: int = Field(default=1000, ge=10, le=100_000)
    """entries (commands, ``once`` results, patch marks) a straight-line call's journal may
    hold. The command that would pass it is not sent: the call gets the fallback
    (``JournalFull`` in the log). A flow that loops for hours calls ``call.restart()``."""
    flow_cache: int = Field(default=10_000, ge=0)
    """straight-line calls whose suspended coroutine a worker keeps in memory, so their next
    callback resumes it without replaying the journal. Past it the least recently used is
    dropped (its next callback replays); so is one left 10 minutes without a callback (its
    call most likely ended on another worker); 0 replays every callback."""
    workers: int = Field(default=1, ge=1)
    """worker processes sharing this app; more than one with the memory store is refused."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``environ`` (default ``os.environ``), ``overrides`` winning.

        Raises ConfigurationError naming each problem as it was written: the keyword
        (``handler_budget=9``) for an override, the variable
        (``RTCONTROL_HANDLER_BUDGET``) for the environment; an unknown keyword gets the
        closest setting's name. An unknown ``RTCONTROL_*`` variable close to a setting's
        is logged as a warning (it is ignored).
        """
        env = os.environ if environ is None else environ
        unknown = sorted(set(overrides) - set(cls.model_fields))
        if unknown:
            raise ConfigurationError("; ".join(unknown_keyword(name) for name in unknown))
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(_ENV + name.upper())
            if raw is not None and raw != "":
                values[name] = raw
        if "workers" not in values and env.get("WEB_CONCURRENCY"):
            values["workers"] = env["WEB_CONCURRENCY"]
        _warn_misspelled(env)
        given = {k: v for k, v in overrides.items() if v is not None}
        values.update(given)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                name = ".".join(map(str, error["loc"]))
                if name in given:
                    shown = "..." if _secret(name) else repr(given[name])
                    where = f"{name}={shown}"
                elif name == "workers" and _ENV + "WORKERS" not in env:
                    where = "WEB_CONCURRENCY"
                else:
                    where = f"{_ENV}{name.upper()}"
                problems.append(f"{where}: {error['msg']}")
            raise ConfigurationError(f"invalid settings: {'; '.join(problems)}") from None


def unknown_keyword(name: str, where: str = "", others: tuple[str, ...] = ()) -> str:
    """What to say of a keyword that is not a setting: its name as written (never its
    value, which may be a secret), and the closest of the settings and ``others``.
    ``where``: the call it was given to (``"App"``)."""
    known = [*others, *Settings.model_fields]
    match = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
    head = f"{where}({name}=...)" if where else f"{name}=..."
    if match:
        return f"{head}: no such keyword; did you mean {match[0]}=?"
    return f"{head}: no such keyword; the keywords are {', '.join(known)}"


def _secret(name: str) -> bool:
    field = Settings.model_fields.get(name)
    return field is not None and not field.repr


def _warn_misspelled(env: Mapping[str, str]) -> None:
    for variable in env:
        if not variable.startswith(_ENV):
            continue
        name = variable[len(_ENV) :].lower()
        if name in Settings.model_fields:
            continue
        match = difflib.get_close_matches(name, list(Settings.model_fields), n=1, cutoff=0.8)
        if match:
            settings_log.warning(
                "%s is not a setting and is ignored; did you mean %s%s?",
                variable,
                _ENV,
                match[0].upper(),
            )


def settings_table() -> str:
    """The README's settings table, generated from the fields (``make docs``)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        variable = f"`{_ENV}{name.upper()}`"
        if name == "workers":
            variable += " (or `WEB_CONCURRENCY`)"
        default = field.default
        shown = (
            ""
            if default is None
            else f"`{str(default).lower() if isinstance(default, bool) else default}`"
        )
        text = " ".join((field.description or "").split()).replace("``", "`")
        rows.append(f"| {variable} | {shown} | {text[:1].upper() + text[1:]} |")
    return "\n".join(rows) + "\n"
