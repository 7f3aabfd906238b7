"""LocalServer start-up failures release what they took (warnings are errors here)."""

from __future__ import annotations

import gc
import socket
import warnings

import pytest
from emu_helpers import ScriptedApp

from rtcontrol.emulator import LocalServer


async def _start_on(port: int, host: str = "127.0.0.1") -> OSError:
    server = LocalServer(ScriptedApp().asgi, host=host, port=port)
    try:
        await server.start()
    except OSError as exc:
        return exc
    await server.stop()
    raise AssertionError(f"{host}:{port} should not be bindable")


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("case", ["port-in-use", "unknown-host"])
async def test_a_failed_bind_closes_its_socket(case: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if case == "port-in-use":
                error = await _start_on(port)
            else:
                error = await _start_on(0, host="no-such-host.invalid")
            del error  # its traceback holds the frame that held the socket
            gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == [], [str(w.message) for w in leaks]
