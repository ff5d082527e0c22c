"""Load a page in headless Chromium (Debian's ``chromium`` package) and return its DOM after
the page's scripts ran; tests skip with a message where no browser is installed."""
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=10000")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless browser: install Debian's chromium package "
                "(apt-get install chromium; .ci/run does) to check the report in a browser")


def rendered_dom(page: Path) -> str:
    """The DOM of ``page`` (a local file) after load, as Chromium serialises it."""
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                              Path(page).resolve().as_uri()],
                             capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout
