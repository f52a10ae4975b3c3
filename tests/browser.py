"""Debian's chromium, headless, driven through Debian's chromedriver (the same build, so the
WebDriver and DevTools protocols always match) with selenium: load a report page, read the
browser's console log, measure each section and screenshot the suites' sections.

chromedriver is started through harness/procs.py (in the run's ledger, killed with its group at
the end); chromium is chromedriver's child, in that group. By hand, for a run's real page:

    .venv/bin/python -m tests.browser reports/<run-id>/index.html <folder for the screenshots>
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from harness.ports import LOOPBACK, free_port
from harness.procs import spawn

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
MISSING = ("Debian's chromium and chromedriver are needed for the report's browser test: "
           "apt-get install chromium chromium-driver")
PAGE_LOAD_S = 60
WIDTH = 1400


def available() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


@dataclass
class PageReport:
    console: list[dict[str, Any]]  # the browser's console log (level, message)
    sections: dict[str, dict[str, float]]  # section id -> its box (height, width) and what it holds
    screenshots: dict[str, Path] = field(default_factory=dict)
    title: str = ""

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.console if e.get("level") in ("SEVERE", "ERROR")]


@contextmanager
def chromium(workdir: Path) -> Iterator[Any]:
    """A selenium session on headless chromium; chromedriver's process group is killed after."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options

    port = free_port()
    log = open(workdir / "chromedriver.log", "wb")  # noqa: SIM115 - closed below, after the process
    child = spawn([CHROMEDRIVER, f"--port={port}", f"--allowed-ips={LOOPBACK}"], what="chromedriver", stdout=log,
                  stderr=log)
    driver = None
    try:
        url = f"http://{LOOPBACK}:{port}"
        until = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/status", timeout=2).json()["value"]["ready"]:
                    break
            except (requests.RequestException, ValueError, KeyError):
                pass
            if time.monotonic() > until or child.popen.poll() is not None:
                raise RuntimeError(f"chromedriver did not get ready on {url}; see {workdir / 'chromedriver.log'}")
            time.sleep(0.2)
        options = Options()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    f"--window-size={WIDTH},1000", f"--user-data-dir={workdir / 'profile'}",
                    "--no-first-run", "--disable-extensions", "--disable-background-networking"):
            options.add_argument(arg)  # --no-sandbox: root (CI) cannot use chromium's sandbox
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Remote(command_executor=url, options=options)
        driver.set_page_load_timeout(PAGE_LOAD_S)
        driver.set_script_timeout(30)
        yield driver
    finally:
        if driver is not None:
            try:
                driver.quit()
            except Exception:  # noqa: BLE001 - the group is killed next either way
                pass
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.popen.wait(timeout=30)
        child.done()
        log.close()


_MEASURE = """
return Array.from(document.querySelectorAll('section.report-section')).map(s => {
  const r = s.getBoundingClientRect();
  return {id: s.id, height: r.height, width: r.width,
          svgs: Array.from(s.querySelectorAll('figure svg')).map(v => v.getBoundingClientRect().height),
          details: s.querySelectorAll('details').length, rows: s.querySelectorAll('tr').length,
          text: s.innerText.length};
});
"""


def inspect_page(page: Path, out_dir: Path, *, screenshot_prefix: str = "suite-") -> PageReport:
    """Load ``page`` (a file), and return its console log and sections; the sections whose id starts
    with ``screenshot_prefix`` are screenshotted into ``out_dir`` as <id>.png."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.command import Command

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="seamcheck-browser-") as tmp, chromium(Path(tmp)) as driver:
        driver.get(page.resolve().as_uri())
        height = driver.execute_script("return document.documentElement.scrollHeight")
        # One window as tall as the page (chromium's limit ~16k px): element screenshots are not cut.
        driver.set_window_size(WIDTH, min(max(int(height) + 100, 1000), 16000))
        boxes = driver.execute_script(_MEASURE)
        shots = {}
        for box in boxes:
            if box["id"].startswith(screenshot_prefix):
                path = out_dir / f"{box['id']}.png"
                driver.find_element(By.ID, box["id"]).screenshot(str(path))
                shots[box["id"]] = path
        console = driver.execute(Command.GET_LOG, {"type": "browser"})["value"]
        return PageReport(console, {b["id"]: b for b in boxes}, shots, driver.title)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.browser <page.html> <screenshot folder>", file=sys.stderr)
        return 2
    if not available():
        print(MISSING, file=sys.stderr)
        return 2
    report = inspect_page(Path(argv[0]), Path(argv[1]))
    print(f"title: {report.title}")
    for sid, box in report.sections.items():
        print(f"  {sid}: {box['height']:.0f} px, {len(box['svgs'])} plots, {box['details']} details, {box['rows']} rows"
              + (f" -> {report.screenshots[sid]}" if sid in report.screenshots else ""))
    print(f"console: {len(report.console)} entries, {len(report.errors)} errors")
    for entry in report.errors:
        print(f"  {entry['level']}: {entry['message']}")
    return 1 if report.errors else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
