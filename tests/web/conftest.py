"""Fixtures of the web page's tests: a session writer serving its page on a free
loopback port, an HTTP client for it, and headless Chromium (Debian's ``chromium``
and ``chromium-driver``, driven by selenium; never a downloaded browser)."""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.waiting import wait_for  # noqa: F401 - the web tests import it from here

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


class Client:
    """GETs (and other methods) on the page's server; answers (status, type, body)."""

    def __init__(self, url: str):
        self.url = url

    def request(self, path: str, method: str = "GET",
                headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
        req = urllib.request.Request(self.url + path.lstrip("/"), method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.headers.get("Content-Type", ""), r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type", ""), e.read()

    def json(self, path: str) -> Any:
        code, _, body = self.request(path)
        assert code == 200, f"GET {path}: {code} {body[:300]!r}"
        return json.loads(body)


@pytest.fixture
def web_factory(writer_factory, data_dir):
    """``make(**writer_options)`` -> (writer, server, client): a session writer of
    ``test_session`` serving its page for files under ``data_dir``."""
    from nexus_writer.web import for_session_writer

    servers = []

    def make(**options: Any):
        writer = writer_factory(**options)
        server = for_session_writer(writer, port=0, roots=[str(data_dir)]).start()
        servers.append(server)
        return writer, server, Client(server.url)

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium with a fresh profile; its console log is kept."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are not installed (.ci/run installs them)")
        pytest.skip("Debian's chromium and chromium-driver are needed (apt-get install)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path / "chromium-profile"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,1100",
                f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)
