"""Loads a report page in headless Chromium (Debian's ``chromium``) and checks what a reader would see.

Chromium runs with its own profile, without background networking, and with every host name
resolving to nothing, so it reaches no network; the page's Content-Security-Policy forbids
every load but ``data:`` besides. Its console goes to stderr (``--enable-logging=stderr``):
a report logs nothing, so every ``CONSOLE`` line (an error, a blocked load, an uncaught
exception) is a failure.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

CHROMIUM = "chromium"
WINDOW = (1400, 3000)
FLAGS = (
    "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--no-default-browser-check",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
    "--disable-extensions", "--disable-domain-reliability", "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0", "--hide-scrollbars",
    "--virtual-time-budget=10000",
)
_BODY = re.compile(r"<body([^>]*)>")


@dataclass
class PageLoad:
    """What Chromium made of a page.

    Attributes:
        dom: the DOM after the load event, serialised.
        body: the ``<body>`` element's attributes.
        console: the console lines Chromium logged.
        screenshot: the PNG it took of the window.
    """

    dom: str
    body: dict[str, str]
    console: list[str]
    screenshot: Path


def load_page(page: Path, workdir: Path) -> PageLoad:
    """Opens ``page`` in headless Chromium: its DOM after load, its console and a screenshot."""
    binary = shutil.which(CHROMIUM)
    assert binary, "chromium is not installed: `make install-test` installs it (apt-get install chromium)"
    workdir.mkdir(parents=True, exist_ok=True)
    screenshot = workdir / f"{page.stem}.png"
    done = subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={workdir / 'profile'}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
         f"--screenshot={screenshot}", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    body = _BODY.search(done.stdout)
    assert body, f"no <body> in the DOM: {done.stdout[:500]}"
    return PageLoad(
        dom=done.stdout,
        body=dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1))),
        console=[line for line in done.stderr.splitlines() if ":CONSOLE" in line],
        screenshot=screenshot,
    )


def assert_report_loads(page: Path, workdir: Path, *, thumbnails: bool = True) -> PageLoad:
    """The report loads with no console output, every image of it decoded, the funnel chart and
    the kept gallery present (with thumbnails when the samples hold images), and the screenshot
    shows a page, not a blank window."""
    load = load_page(page, workdir)
    assert load.console == [], load.console
    assert load.body.get("data-images") == "loaded", load.body
    assert int(load.body["data-image-count"]) == page.read_text().count("<img "), "every <img> was counted"
    assert re.search(r'<img id="[\w-]+" class="chart funnel"[^>]* src="data:image/svg\+xml;base64,', load.dom)
    gallery = load.dom[load.dom.index('id="kept-gallery"'):load.dom.index('id="rejects"')]
    assert gallery.count('<article class="card') >= 1
    assert ('class="thumb"' in gallery) == thumbnails
    with Image.open(load.screenshot) as shot:
        assert shot.size == WINDOW
        assert sum(1 for n in shot.convert("L").histogram() if n) > 50, "the screenshot is nearly blank"
    return load
