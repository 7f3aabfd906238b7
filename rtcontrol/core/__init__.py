"""The engine: callbacks in, replies out, with no web framework, HTTP client or emulator.

Layers, lowest first (a module imports only from layers below it; a test checks
this from the source):

* ``rtcontrol.errors``, ``protocol``, ``media``, ``commands``, ``results``,
  ``settings``, ``validate``, ``events``, ``store``: wire-level leaves;
* ``rtcontrol.core``: the engine (this package);
* ``rtcontrol.app``: the ``App`` facade; ``rtcontrol.adapters``: ASGI and FastAPI;
* ``rtcontrol.rpc``, ``emulator``, ``testing``, ``cli``: clients and tools.

See ``docs/architecture.md`` for the path of one callback.
"""
