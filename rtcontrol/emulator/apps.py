"""Voice apps, hashes and the checks shared by the JSON-RPC server and the Python API.

Both entry points raise :class:`RPCFault` with CALLR's message tokens
(``PROPERTY_VALUE_ERROR [app]``...), so a test using ``emu.realtime(...)`` sees exactly
what a client of ``calls.realtime`` would.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from rtcontrol.errors import RtcontrolError
from rtcontrol.media import E164, Target

__all__ = [
    "App",
    "HashGenerator",
    "RPCFault",
    "check_callid",
    "check_name",
    "check_options",
    "check_target",
    "format_datetime",
]

_CDR_FIELD = re.compile(r"[A-Za-z0-9]{0,32}")
_APP_PARAMS = ("url", "login", "password", "data_format")


class RPCFault(RtcontrolError):
    """A JSON-RPC method error: ``token`` (``PROPERTY_VALUE_ERROR``) and the offending field."""

    def __init__(self, token: str, field: str | None = None, message: str | None = None) -> None:
        self.token = token
        self.field = field
        self.message = message or (f"{token} [{field}]" if field else token)
        super().__init__(self.message)


def format_datetime(value: datetime) -> str:
    """CALLR's ``YYYY-MM-DD HH:MM:SS`` (UTC)."""
    return value.strftime("%Y-%m-%d %H:%M:%S")


class HashGenerator:
    """Unique 8-character upper-case alphanumeric hashes (apps and call requests)."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)
        self._seen: set[str] = set()

    def __call__(self) -> str:
        alphabet = string.ascii_uppercase + string.digits
        while True:
            value = "".join(self._random.choice(alphabet) for _ in range(8))
            if value not in self._seen:
                self._seen.add(value)
                return value


@dataclass
class App:
    """A voice app; only ``REALTIME10`` apps can drive calls."""

    hash: str
    name: str
    type: str
    url: str = ""
    login: str = ""
    password: str = ""
    data_format: str = "JSON"
    date_creation: str = ""
    date_update: str = ""

    def to_wire(self) -> dict[str, Any]:
        """The App object of the API (§3.6)."""
        return {
            "hash": self.hash,
            "name": self.name,
            "package": {"name": self.type, "type": self.type, "has_did": False},
            "p": {
                "url": self.url,
                "login": self.login,
                "password": self.password,
                "data_format": self.data_format,
            },
            "did": [],
            "date_creation": self.date_creation,
            "date_update": self.date_update,
        }

    def update(self, params: Any) -> None:
        """Apply an ``apps.create``/``apps.edit`` params object (``None`` changes nothing)."""
        if params is None:
            return
        if not isinstance(params, Mapping):
            raise RPCFault("INVALID_PARAM_FORMAT", "params")
        for key, value in params.items():
            if key not in _APP_PARAMS:
                raise RPCFault("PROPERTY_VALUE_ERROR", f"params.{key}")
            if not isinstance(value, str):
                raise RPCFault("PROPERTY_VALUE_ERROR", f"params.{key}")
        url = params.get("url", self.url)
        if url and not _valid_url(url):
            raise RPCFault("PROPERTY_VALUE_ERROR", "params.url")
        if params.get("data_format", "JSON") != "JSON":
            raise RPCFault("PROPERTY_VALUE_ERROR", "params.data_format")
        self.url = url
        self.login = params.get("login", self.login)
        self.password = params.get("password", self.password)


def _valid_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise RPCFault("INVALID_PARAM_FORMAT", "name")
    if not name.strip() or len(name) > 128:
        raise RPCFault("PROPERTY_VALUE_ERROR", "name")
    return name


def check_callid(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RPCFault("INVALID_PARAM_FORMAT", "callid")
    if not 0 <= value < 2**64:
        raise RPCFault("PROPERTY_VALUE_ERROR", "callid")
    return value


def check_target(value: Any) -> Target:
    if isinstance(value, Target):
        return value
    if not isinstance(value, Mapping):
        raise RPCFault("INVALID_PARAM_FORMAT", "target")
    try:
        return Target.model_validate(dict(value))
    except ValidationError:
        raise RPCFault("PROPERTY_VALUE_ERROR", "target") from None


def check_options(value: Any, allowed: tuple[str, ...], *, max_loop: int = 10) -> dict[str, Any]:
    """Validate a call options object (§4.2, §4.3); ``None`` means all defaults."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise RPCFault("INVALID_PARAM_FORMAT", "options")
    options: dict[str, Any] = {"cdr_field": "", "cli": "BLOCKED", "loop": 1}
    for key, item in value.items():
        if key not in allowed:
            raise RPCFault("PROPERTY_VALUE_ERROR", f"options.{key}")
        if key == "cdr_field" and not (isinstance(item, str) and _CDR_FIELD.fullmatch(item)):
            raise RPCFault("PROPERTY_VALUE_ERROR", "options.cdr_field")
        if key == "cli" and not (
            item == "BLOCKED" or (isinstance(item, str) and E164.fullmatch(item))
        ):
            raise RPCFault("PROPERTY_VALUE_ERROR", "options.cli")
        if key == "loop" and (
            isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= max_loop
        ):
            raise RPCFault("PROPERTY_VALUE_ERROR", "options.loop")
        options[key] = item
    return options
