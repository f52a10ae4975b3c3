"""The run's page in a real browser: Debian's chromium, headless (tests/browser.py), loads it from
disk with nothing else to fetch, every section renders with its plots, the console stays clean,
and each suite's section is screenshotted into the run's report (browser/<section>.png). A page
that does log an error is caught the same way (so "no errors" is not the absence of a log)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.report.html import write_index
from tests import browser
from tests.report_sample import summary_sample

SUITE_SECTIONS = ("suite-conformance", "suite-canary", "suite-chaos", "suite-matrix")


@pytest.fixture(scope="module")
def needs_chromium() -> None:
    if not browser.available():
        if os.environ.get("CI"):  # CI installs both (.ci/run): missing there is a broken setup, not a skip
            pytest.fail(browser.MISSING)
        pytest.skip(browser.MISSING)


def test_the_report_renders_in_chromium_without_console_errors(needs_chromium, tmp_path: Path, run_report) -> None:
    data = summary_sample(tmp_path / "run")
    page = write_index(tmp_path / "run", data)
    shots = tmp_path / "screenshots"
    seen = browser.inspect_page(page, shots)
    assert seen.title == f"seamcheck run {data['run_id']}: failed"
    assert seen.errors == [], seen.errors
    expected = {"overview", "versions", *SUITE_SECTIONS, "tests", "timings", "artifacts"}
    assert expected <= set(seen.sections), sorted(seen.sections)
    for sid, box in seen.sections.items():
        assert box["height"] > 50 and box["width"] > 600 and box["text"] > 20, (sid, box)
    assert len(seen.sections["suite-canary"]["svgs"]) == 2 and len(seen.sections["suite-chaos"]["svgs"]) == 1
    assert all(h > 200 for s in ("suite-canary", "suite-chaos") for h in seen.sections[s]["svgs"]), seen.sections
    assert seen.sections["suite-matrix"]["rows"] >= 3 and seen.sections["suite-conformance"]["details"] == 2
    assert set(seen.screenshots) == set(SUITE_SECTIONS)
    for sid, path in seen.screenshots.items():
        png = path.read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, (sid, len(png))
        run_report.add_artifact(f"browser/{sid}.png", png)  # kept with the run's report


def test_a_console_error_is_seen(needs_chromium, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><title>t</title></head><body><section class="report-section" '
                    'id="suite-x"><p>x</p></section><script>console.error("seamcheck-broken-page");'
                    "undefined_function();</script></body></html>")
    seen = browser.inspect_page(page, tmp_path / "shots")
    messages = " ".join(e["message"] for e in seen.errors)
    assert "seamcheck-broken-page" in messages and "undefined_function" in messages, seen.console
