"""Adversarial engine tests reuse the fixtures and kit of ``tests/core``."""

from tests.core.conftest import (  # noqa: F401 - fixtures, re-exported for pytest
    _clean_env,
    clock,
    control,
    make_app,
    probe,
    store,
)
