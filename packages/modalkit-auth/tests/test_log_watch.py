"""The log watch (conftest.key_watch) that every auth test runs under can fail: it sees a key wherever it is logged.

Each auth test ends by checking that no record logged while it ran (any logger, any level, with exception
text) holds a key the test made; these tests show the check would catch a leak.
"""

from __future__ import annotations

import logging
from typing import Any


def test_the_watch_sees_a_key_in_a_message_at_debug(key_watch: Any) -> None:
    key = key_watch.new_key()
    logging.getLogger("some.library.deep.down").debug("value=%s", key)
    assert len(key_watch.leaks()) == 1
    key_watch.recorder.texts.clear()


def test_the_watch_sees_a_key_in_exception_text(key_watch: Any) -> None:
    key = key_watch.new_key()
    try:
        raise RuntimeError(f"bad value {key}")
    except RuntimeError:
        logging.getLogger("elsewhere").exception("something failed")
    assert len(key_watch.leaks()) == 1
    key_watch.recorder.texts.clear()


def test_the_watch_is_quiet_when_nothing_leaks(key_watch: Any) -> None:
    key_watch.new_key()
    logging.getLogger("modalkit_auth").info("a message without key material")
    assert key_watch.recorder.texts
    assert key_watch.leaks() == []
