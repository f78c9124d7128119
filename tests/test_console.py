"""The operator console in a real browser (Debian's chromium through chromium-driver) against real
processes: Redis, Triton, the control plane, Prometheus (scraping it, with the shipped rules) and the
console on loopback. Refused without a token and with a wrong one; logged in: versions, an experiment
created through the form and its report with the forest plot once visitors watched, stopping it, a
rollback then a promotion (each confirmed, each served), training jobs, federated runs, monitoring; a
forged form is refused; the pages fit a phone's width. With CINESYNC_CONSOLE_SCREENSHOTS=<folder>
each page is saved there."""

from __future__ import annotations

import json
import os
import random
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from cinesync.settings import Settings
from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc
from launcher.client import wait_for_version
from launcher.services.process import ManagedProcess, free_port
from tests.published import two_versions

pytestmark = pytest.mark.slow
RULES = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "cinesync" / "rules" / "cinesync.rules.yml"
SHOTS = os.environ.get("CINESYNC_CONSOLE_SCREENSHOTS", "")


@pytest.fixture()
def browser() -> Iterator[WebDriver]:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("no chromium/chromedriver: `make setup` installs Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or ""))
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


def _go(driver: WebDriver, element: WebElement) -> None:
    """Click ``element`` and wait for the page it leads to."""
    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(page))


def _shot(driver: WebDriver, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        width = driver.get_window_size()["width"]
        driver.set_window_size(width, min(max(height + 140, 600), 4000))
        driver.save_screenshot(str(Path(SHOTS) / f"{name}.png"))
        driver.set_window_size(width, 900)


def _wait_until_routed(address: str, user: str, experiment: str, timeout: float = 30.0) -> None:
    """Until the control plane answers inside ``experiment`` (it loads the arms' versions first)."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.RecommendationServiceStub(channel)
        while stub.Recommend(pb.RecommendRequest(user_id=user, k=10), timeout=10).experiment != experiment:
            assert time.monotonic() < deadline, f"no answer inside {experiment}"
            time.sleep(0.2)


def rows_of(driver: WebDriver, table: str) -> dict[str, list[str]]:
    """The cells of each row of table ``table``, by its header cell."""
    return {row.find_element(By.TAG_NAME, "th").text: [cell.text for cell in row.find_elements(By.CSS_SELECTOR, "th, td")]
            for row in driver.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr")}


def _visits(address: str, users: list[str], watch_rate: dict[str, float]) -> None:
    """Each user visits three times and watches the first title with their arm's rate (seeded)."""
    rng = random.Random(3)
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.RecommendationServiceStub(channel)
        for _ in range(3):
            for user in users:
                answer = stub.Recommend(pb.RecommendRequest(user_id=user, k=10), timeout=10)
                if answer.variant in watch_rate and rng.random() < watch_rate[answer.variant]:
                    stub.RecordFeedback(pb.FeedbackRequest(request_id=answer.request_id, user_id=user,
                                                           item_id=answer.items[0].item_id,
                                                           kind=pb.FEEDBACK_KIND_WATCH), timeout=10)


def test_the_console_in_a_browser(
    small_run: Path, exported_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, browser: WebDriver
) -> None:
    monkeypatch.setenv("CINESYNC_RANKING_TIMEOUT_S", "10")
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    prometheus_port = free_port()
    settings = Settings(home=tmp_path / "home", model_repository=tmp_path / "repo", grpc_port=0, metrics_port=0,
                        console_port=0, bundle_poll_s=0.3, redis_url=redis_url,
                        prometheus_url=f"http://127.0.0.1:{prometheus_port}")
    with two_versions(small_run, exported_run, settings, tmp_path) as published:
        stack, first, second = published.stack, published.first, published.second
        stack.start_control_plane()
        config = tmp_path / "prometheus.yml"
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "control-plane", "static_configs": [{"targets": [
                stack.addresses["control plane metrics"].split("/")[2]]}]}]}))
        prometheus = ManagedProcess("prometheus", [
            "prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}"], log_path=tmp_path / "prometheus.log")
        try:
            prometheus.wait_ready(lambda: urllib.request.urlopen(f"{settings.prometheus_url}/-/ready",
                                                                 timeout=1).status == 200, timeout=30)
            stack.start_console()
            console, address = stack.addresses["console"], stack.grpc_address
            token = settings.admin_token_file.read_text().strip()
            users = json.loads((settings.serving_dir / str(second) / "users.json").read_text())
            wait_for_version(address, users[0], second, timeout=60)
            _check_console(browser, console, address, token, users, first, second)
        finally:
            prometheus.stop()


def _check_console(driver: WebDriver, console: str, address: str, token: str, users: list[str], first: int,
                   second: int) -> None:
    # Without a token: the login form, answered 401, and nothing else.
    assert httpx.get(f"{console}/versions").status_code == 401
    driver.get(f"{console}/versions")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Log in" and "Model versions" not in driver.page_source
    _shot(driver, "login")
    driver.find_element(By.ID, "token").send_keys("not-the-token")
    _go(driver, driver.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    assert "not accepted" in driver.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert driver.find_element(By.TAG_NAME, "h1").text == "Log in"

    driver.find_element(By.ID, "token").send_keys(token)
    _go(driver, driver.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    assert driver.find_element(By.TAG_NAME, "h1").text == "Model versions"
    rows = driver.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert [r.find_element(By.TAG_NAME, "th").text for r in rows] == [str(first), str(second)]
    assert "current" in rows[1].get_attribute("class")
    _shot(driver, "versions")

    # An experiment through the form: two arms on the first version, ranked and in retrieval order.
    _go(driver, driver.find_element(By.LINK_TEXT, "Experiments"))
    _go(driver, driver.find_element(By.LINK_TEXT, "Create an experiment"))
    driver.find_element(By.ID, "name").send_keys("console-ab")
    for row, (name, ranking) in enumerate((("ranked", first), ("retrieval", 0))):
        driver.find_element(By.ID, f"variant_{row}").send_keys(name)
        Select(driver.find_element(By.ID, f"retrieval_{row}")).select_by_value(str(first))
        Select(driver.find_element(By.ID, f"ranking_{row}")).select_by_value(str(ranking))
    _shot(driver, "experiment-new")
    _go(driver, driver.find_element(By.ID, "create"))
    assert driver.find_element(By.TAG_NAME, "h1").text == "Experiment console-ab"
    assert "no exposures yet" in driver.find_element(By.CSS_SELECTOR, "ul.flags").text
    _wait_until_routed(address, users[0], "console-ab")
    _visits(address, users[:150], {"ranked": 0.5, "retrieval": 0.1})
    time.sleep(2)  # Prometheus scrapes and evaluates every second
    driver.get(f"{console}/experiments/console-ab")
    plot = driver.find_element(By.CSS_SELECTOR, "#forest-plot svg")
    assert plot.size["width"] > 200 and plot.size["height"] > 50
    table = driver.find_element(By.ID, "results").text
    assert "ranked (control)" in table and "retrieval" in table and "(significant)" in table
    _shot(driver, "experiment-report")
    Select(driver.find_element(By.ID, "cuped")).select_by_value("off")
    _go(driver, driver.find_element(By.CSS_SELECTOR, "form.inline button"))
    assert "CUPED difference" not in driver.find_element(By.ID, "results").text

    # Monitoring, from Prometheus: the visits' version in the quality window, with its drift.
    _go(driver, driver.find_element(By.LINK_TEXT, "Monitoring"))
    assert "Prometheus at http://127.0.0.1" in driver.find_element(By.TAG_NAME, "main").text
    for table in ("quality", "drift"):
        assert str(first) in rows_of(driver, table), table
    assert int(rows_of(driver, "quality")[str(first)][1]) >= 450  # three visits of 150 users
    _shot(driver, "monitoring")
    driver.get(f"{console}/experiments/console-ab")

    # Stop the experiment, then roll back to the first version and promote the second again: each
    # confirmed on its own page, each served.
    _go(driver, driver.find_element(By.LINK_TEXT, "Stop this experiment"))
    _go(driver, driver.find_element(By.ID, "confirm"))
    assert "Experiment console-ab is stopped" in driver.find_element(By.CSS_SELECTOR, "[role=status]").text
    _go(driver, driver.find_element(By.LINK_TEXT, "Versions"))
    _go(driver, driver.find_element(By.LINK_TEXT, "Roll back to the previous version"))
    assert driver.find_element(By.TAG_NAME, "h1").text == "Confirm"
    _go(driver, driver.find_element(By.ID, "confirm"))
    assert f"version {first} is current (was {second})" in driver.find_element(By.CSS_SELECTOR, "[role=status]").text
    wait_for_version(address, users[0], first, timeout=30)
    _go(driver, driver.find_element(By.LINK_TEXT, "Continue"))
    _go(driver, driver.find_element(By.LINK_TEXT, f"Promote {second}"))
    _go(driver, driver.find_element(By.ID, "confirm"))
    assert f"Version {second} is current (was {first})" in driver.find_element(By.CSS_SELECTOR, "[role=status]").text
    wait_for_version(address, users[0], second, timeout=30)

    # A form posted from elsewhere with the operator's cookie: refused.
    cookie = {c["name"]: c["value"] for c in driver.get_cookies()}
    forged = httpx.post(f"{console}/versions/rollback", cookies=cookie, data={"csrf": "guess"})
    assert forged.status_code == 403 and "CSRF" in forged.text

    for page, heading, name in (("/jobs", "Training jobs", "jobs"), ("/federated", "Federated runs", "federated")):
        driver.get(f"{console}{page}")
        assert driver.find_element(By.TAG_NAME, "h1").text == heading
        _shot(driver, name)

    # A phone's width: nothing wider than the screen but the tables' own scroll boxes.
    driver.set_window_size(390, 844)
    driver.get(f"{console}/experiments/console-ab")
    assert driver.execute_script("return document.documentElement.scrollWidth") <= 390
    if SHOTS:
        driver.save_screenshot(str(Path(SHOTS) / "experiment-report-phone.png"))
    driver.set_window_size(1280, 900)

    _go(driver, driver.find_element(By.CSS_SELECTOR, ".logout button"))
    driver.get(f"{console}/versions")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Log in"
