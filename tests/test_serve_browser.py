"""The console in a real headless browser: Debian's chromium driven by Selenium through chromedriver
(`.ci/run` installs both where it can). Skipped, with the reason, where they are not installed.

Set SYNCENGINE_SCREENSHOTS=DIR to keep a screenshot of each page the test visits."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from console_support import PASSWORDS, console_rig

from sync_rig import NAME

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
DRIVER = shutil.which("chromedriver")


def browser():
    """A headless chromium session, or a skip that says what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    if not CHROMIUM or not DRIVER:
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver; "
                    ".ci/run does it when it runs as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--disable-extensions", "--no-first-run"):
        options.add_argument(argument)
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(options=options, service=Service(DRIVER))


def test_an_operator_logs_in_finds_a_held_order_releases_it_and_sees_it_delivered(tmp_path, monkeypatch):
    """Log in, open the integration (held orders first), open a held order, Release, confirm: the
    order page shows it delivered, the WMS has it, and the release is listed with who did it."""
    driver = browser()
    shots = os.environ.get("SYNCENGINE_SCREENSHOTS")
    from selenium.webdriver.common.by import By

    def shot(name: str) -> None:
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(Path(shots) / f"console-{name}.png"))

    try:
        with console_rig(tmp_path, monkeypatch) as c:
            base = str(c.client.base_url).rstrip("/")
            driver.get(base + "/")
            assert "/login" in driver.current_url
            driver.find_element(By.ID, "user").send_keys("op")
            driver.find_element(By.ID, "password").send_keys(PASSWORDS["op"])
            driver.find_element(By.ID, "login").click()
            assert driver.find_element(By.LINK_TEXT, NAME)
            shot("overview")
            driver.find_element(By.LINK_TEXT, NAME).click()
            held = driver.find_elements(By.CSS_SELECTOR, "tr.held td:first-child a")
            assert held, driver.page_source[:2000]
            key = held[-1].text
            held[-1].click()
            assert driver.find_element(By.ID, "status").text == "held"
            driver.find_element(By.ID, "release").click()
            assert f"Send held order {key}" in driver.find_element(By.TAG_NAME, "h1").text
            driver.find_element(By.ID, "confirm").click()
            assert driver.find_element(By.ID, "status").text == "delivered"
            assert "release: released 1" in driver.find_element(By.CSS_SELECTOR, ".flash").text
            assert "op" in driver.find_element(By.CSS_SELECTOR, "table.actions-log").text
            shot("order")
            assert c.entry(key).status == "delivered"
            assert any(order["referenceNum"] == key for order in c.rig.wms.state.created)
            print(f"browser test: chromium logged in, released held order {key}, saw it delivered")
    finally:
        driver.quit()
