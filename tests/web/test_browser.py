"""The page in a real browser (headless Chromium): loads cleanly, shows a running scan
and its rising counters, plots new points without a reload, shows why a scan
FAILED, opens a file's tree, refuses a path outside the data roots."""

from __future__ import annotations

import urllib.parse

import h5py
import numpy as np
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from ..writer.helpers import wait_written
from .conftest import wait_for


def _console_errors(browser) -> list[dict]:
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def _text(browser, css: str) -> str:
    """The element's text; "" when absent or replaced by the page between the lookup
    and the read (live updates re-render rows: the caller's wait asks again)."""
    try:
        found = browser.find_elements(By.CSS_SELECTOR, css)
        return found[0].text if found else ""
    except StaleElementReferenceException:
        return ""


def _attr(browser, css: str, name: str) -> str | None:
    """The element's attribute; None when absent or re-rendered meanwhile (see _text)."""
    try:
        found = browser.find_elements(By.CSS_SELECTOR, css)
        return found[0].get_attribute(name) if found else None
    except StaleElementReferenceException:
        return None


def test_page_loads_without_console_errors(web_factory, sim_session, browser):
    writer, server, _ = web_factory()
    wait_written(writer, [sim_session.loopscan(3, 0.1, "diode")])
    browser.get(server.url)
    wait_for(lambda: _attr(browser, "#conn", "data-state") == "open", 15,
             "the page's event stream to open")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#scans tr.scan"), 15,
             "the scan listed")
    assert _text(browser, '#sessions tr[data-session="test_session"] td:nth-child(5)') == \
        "RUNNING"
    assert _console_errors(browser) == []


def test_running_scan_counts_and_plot_rise_without_reload(web_factory, sim_session, browser,
                                                          tmp_path):
    writer, server, _ = web_factory(flush_period=0.1)
    sim_session.time_scale = 1.0
    scan = sim_session.loopscan(120, 0.05, "diode", run=False)  # about 6 s
    scan.run_in_thread()
    try:
        while scan.key is None:
            scan.wait(0.01)
        browser.get(server.url)
        browser.execute_script("window.loadedOnce = 'yes'")  # gone if the page reloads
        row = f'#scans tr[data-key="{scan.key}"]'
        wait_for(lambda: _attr(browser, row, "data-state") == "RUNNING", 20,
                 "the scan listed RUNNING")
        first = int(wait_for(lambda: _attr(browser, row + " td.points", "data-written"), 10,
                             "its points counter"))
        wait_for(lambda: int(_attr(browser, row + " td.points", "data-written") or 0) > first,
                 15, f"its points counter to rise above {first}")
        browser.find_element(By.CSS_SELECTOR, row).click()
        plotted = int(wait_for(lambda: int(_attr(browser, "#plot", "data-points") or 0), 15,
                               "a first plot of the scan"))
        assert _attr(browser, "#plot", "data-kind") == "curves"
        assert browser.find_elements(By.CSS_SELECTOR, "#plot .uplot canvas")
        wait_for(lambda: int(_attr(browser, "#plot", "data-points") or 0) > plotted, 15,
                 f"the plot to get points beyond {plotted}")
        channels = {_text(browser, f'#channels tr[data-channel="{name}"] td:first-child')
                    for name in ("timer:elapsed_time", "timer:epoch",
                                 "simulation_diode_sampling_controller:diode")}
        assert "simulation_diode_sampling_controller:diode" in channels, channels
        browser.save_screenshot(str(tmp_path / "web-during-scan.png"))
        assert (tmp_path / "web-during-scan.png").stat().st_size > 10000
        assert _attr(browser, row, "data-state") == "RUNNING"  # all this while it ran
        assert browser.execute_script("return window.loadedOnce") == "yes"
    finally:
        scan.wait(60)
    wait_written(writer, [scan])
    wait_for(lambda: _attr(browser, row, "data-state") == "SUCCEEDED", 15,
             "the scan shown SUCCEEDED")
    wait_for(lambda: _attr(browser, "#plot", "data-points") == "120", 15,
             "the plot with all 120 points")
    assert _console_errors(browser) == []


def test_failed_scan_shows_its_reason(web_factory, sim_session, browser):
    filename = sim_session.scan_saving.filename
    sim_session.scan_saving.create_dataset_path()
    with h5py.File(filename, "w") as f:  # an entry 1.1 of an earlier session: never overwritten
        f.create_group("1.1").attrs["NX_class"] = "NXentry"
    writer, server, _ = web_factory()
    [failed] = wait_written(writer, [sim_session.loopscan(3, 0.1, "diode")])
    assert failed.state.name == "FAILED"
    browser.get(server.url)
    row = f'#scans tr[data-key="{failed.source.key}"]'
    wait_for(lambda: _attr(browser, row, "data-state") == "FAILED", 15, "the scan shown FAILED")
    reason = _text(browser, row + " td.reason")
    assert reason == failed.saving.reason and "entry 1.1" in reason
    # the state filter keeps it; another state hides it
    state = Select(browser.find_element(By.ID, "filter-state"))
    state.select_by_value("SUCCEEDED")
    wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, row), 5, "the row filtered out")
    state.select_by_value("FAILED")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, row), 5, "the row shown again")


def test_file_opens_in_the_tree_view(web_factory, sim_session, browser):
    writer, server, _ = web_factory()
    wait_written(writer, [sim_session.loopscan(4, 0.1, "diode")])
    path = sim_session.scan_saving.filename
    browser.get(server.url + "#" + urllib.parse.urlencode({"file": path}))
    entry = '#tree span[data-path="/1.1"]'
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, entry), 15, "entry 1.1 in the tree")
    browser.find_element(By.CSS_SELECTOR, entry).click()
    group = '#tree span[data-path="/1.1/measurement"]'
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, group), 10, "1.1's children")
    browser.find_element(By.CSS_SELECTOR, group).click()
    dataset = '#tree span[data-path="/1.1/measurement/diode"]'
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, dataset), 10, "the diode dataset")
    browser.find_element(By.CSS_SELECTOR, dataset).click()
    wait_for(lambda: "shape: [4]" in _text(browser, "#node-info"), 10,
             "the dataset's shape shown")
    with h5py.File(path, "r", locking=False) as f:
        assert np.asarray(f["1.1/measurement/diode"]).shape == (4,)
    assert _console_errors(browser) == []


def test_path_outside_the_data_roots_is_refused(web_factory, browser, tmp_path):
    _, server, client = web_factory()
    outside = tmp_path / "outside.h5"
    with h5py.File(outside, "w") as f:
        f["secret"] = 1
    browser.get(server.url + "#" + urllib.parse.urlencode({"file": str(outside)}))
    wait_for(lambda: "refused" in _text(browser, "#file-error"), 15, "the refusal shown")
    assert "403" in _text(browser, "#file-error")
    assert "not under a data root" in _text(browser, "#file-error")
    assert not browser.find_elements(By.CSS_SELECTOR, "#tree span")
