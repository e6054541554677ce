"""A device's state as `fleet status` and the dashboard show it (pure)."""

from __future__ import annotations

from controller.services.observing import device_state


def test_device_state_against_what_was_deployed() -> None:
    assert device_state(False, "a", False, "a") == "unreachable"
    assert device_state(True, "b", True, "a") == "on trial"
    assert device_state(True, "a", False, "a") == "deployed"
    assert device_state(True, "b", False, "a") == "drifted"
    assert device_state(True, "", False, "a") == "drifted"
    assert device_state(True, "b", False, "") == "serving"
    assert device_state(True, "", False, "") == "idle"
