"""The live printout of ``rtcontrol emulator`` (and ``rtcontrol dev``): phone numbers
masked as the project masks them everywhere (``+33*******78``: ``+`` and two digits,
then the last two), also in a value cut to fit the line; and the README says so."""

from __future__ import annotations

import re

import pytest

from rtcontrol.cli import _scrub
from rtcontrol.emulator.bus import ControlEvent
from rtcontrol.emulator.printer import format_event, mask_numbers
from tests.cli.support import ROOT

NUMBERS = {
    "+33612345678": "+33*******78",
    "+33100000001": "+33*******01",
    "+14155550123": "+14*******23",
    "+4915123456789": "+49*********89",
    "+3312345": "+33***45",
}


@pytest.mark.parametrize(("number", "masked"), NUMBERS.items())
def test_numbers_are_masked_alike_in_the_printout_and_the_error_lines(
    number: str, masked: str
) -> None:
    assert mask_numbers(f"from {number} to x") == f"from {masked} to x"
    assert _scrub(f"from {number} to x") == f"from {masked} to x"  # the CLI's error lines


def test_a_number_cut_by_the_line_limit_is_masked_before_the_cut() -> None:
    """The parameters of a command are cut to fit the line: a number the cut shortens
    shows its mask's beginning, never digits of its middle as if they were its end."""
    targets = [{"number": n, "timeout": 30} for n in ("+33100000001", "+33123456789")]
    for pad in range(40):  # wherever the cut falls
        event = ControlEvent(
            seq=1,
            type="command.started",
            callid=1000,
            at=0.5,
            data={"command": "dialout", "params": {"x": "y" * pad, "targets": targets}},
        )
        shown = format_event(event).plain
        assert shown.endswith("...")
        for fragment in re.findall(r"\+[0-9*]+", shown):
            assert any(m.startswith(fragment) for m in ("+33*******01", "+33*******89")), shown
        assert not re.search(r"\+[0-9]{4,}", shown), shown


def test_the_readme_says_the_live_printout_masks_numbers() -> None:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"`rtcontrol emulator \[--callee callees\.yaml\]`(.*?)\n\n", readme, re.S)
    assert found is not None
    paragraph = " ".join(found.group(1).split())
    assert "prints every call live" in paragraph
    assert "phone numbers masked" in paragraph
    assert "`+33*******78`" in paragraph
