"""Open a page in real headless Chromium and report its DOM and the network requests it made."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")

#: Tests that open a page in Chromium: skipped, with the reason, where Debian's `chromium` is
#: not installed; required where `CI` is set (CI installs it), so that they fail there.
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason=f"`{CHROMIUM}` is missing: `apt-get install chromium` to run the browser tests "
    "(required when CI is set)",
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Chromium still pings Google services at start; no name resolves, so nothing leaves the
    # machine, while the page's own requests (to 127.0.0.1 in the control test) still show.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)
LOCAL_SCHEMES = ("file:", "data:", "about:", "chrome:", "blob:")
# The browser's own requests (updates, accounts, time) carry no initiator origin.
BROWSER_INITIATOR = "not an origin"


@dataclass(frozen=True)
class Rendered:
    """The DOM after load and the URLs of the network requests the page made."""

    dom: str
    requests: list[str]


def render(page: Path, tmp: Path) -> Rendered:
    """Load ``page`` in headless Chromium; dump its DOM and read the page's requests off NetLog."""
    netlog = Path(tempfile.mkdtemp(prefix="netlog-", dir=tmp)) / "netlog.json"
    result = _chromium(
        tmp,
        f"--log-net-log={netlog}",
        "--net-log-capture-mode=Everything",
        "--dump-dom",
        page.resolve().as_uri(),
    )
    return Rendered(dom=result.stdout, requests=page_requests(_read_netlog(netlog)))


def screenshot(page: Path, out: Path, tmp: Path) -> None:
    """Save a 1400×1000 screenshot of ``page`` to ``out``."""
    _chromium(
        tmp, f"--screenshot={out.resolve()}", "--window-size=1400,1000", page.resolve().as_uri()
    )
    if not out.is_file():
        raise AssertionError(f"chromium wrote no screenshot at `{out}`")


def page_requests(netlog: dict[str, Any]) -> list[str]:
    """The non-local URLs that pages (not the browser itself) asked for, in order, once each."""
    types = netlog["constants"]["logEventTypes"]
    start = types["URL_REQUEST_START_JOB"]
    urls: list[str] = []
    for event in netlog["events"]:
        params = event.get("params") or {}
        url = params.get("url")
        if event.get("type") != start or not isinstance(url, str):
            continue
        from_page = params.get("initiator", BROWSER_INITIATOR) != BROWSER_INITIATOR or str(
            params.get("network_isolation_key", "")
        ).startswith("file://")
        if from_page and not url.startswith(LOCAL_SCHEMES) and url not in urls:
            urls.append(url)
    return urls


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not CHROMIUM.is_file():
        raise AssertionError(f"`{CHROMIUM}` is missing; install the Debian package `chromium`")
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp)
    command = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise AssertionError(f"chromium exited {result.returncode}: {result.stderr[-2000:]}")
    return result


def _read_netlog(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        loaded: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError:
        # A browser that did not shut down cleanly leaves the events list unterminated.
        loaded = json.loads(text.rstrip().rstrip(",") + "]}")
    return loaded
