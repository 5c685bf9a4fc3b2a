"""The operator page in a real Chromium, driving the real apply.

A package published with the build API and stored as pending, the site's real
runner in a thread, the portal on 127.0.0.1: the operator signs in with the PIN,
sees the badge, reads the dialog, applies, watches the bar reach 100 % and, after
the page reloads, sees the new version. A broken migration shows the reason and
that the old version still runs. Screenshots land in the test's tmp folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from autotel.config import Config
from autotel.db.migrate import migrate_site
from autotel.runner.events import emit, read_events
from autotel.spool.queue import Spool
from tests.apply_support import receive as make_pending
from tests.portal_support import (
    NOTES,
    PIN,
    publish,
    runner_thread,
    running_portal,
)

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
NEW_FILES = {"app/main.py": b"print('1.1.0')\n", "app/alarms.py": b"ALARMS = []\n"}
GOOD_SQL = {"0100_alarms.sql": "CREATE TABLE alarms (id int PRIMARY KEY, text text NOT NULL);\n"}
BAD_SQL = {"0100_alarms.sql": "CREATE TABLE alarms (id int);\nSELECT no_such_column FROM alarms;\n"}
SEED_MESSAGES = ["Перевірка пакету...", "Резервна копія...", "Застосування файлів...",
                 "Міграція БД...", "Перезапуск..."]
# Records every value the bar and the step message show, as the operator would see them.
WATCH_PROGRESS = """() => {
  window.seen = {pct: [], msg: []};
  const watch = (id, list) => new MutationObserver(() => list.push(
      document.getElementById(id).textContent)).observe(
      document.getElementById(id), {childList: true, characterData: true, subtree: true});
  watch("bar-pct", window.seen.pct);
  watch("step-msg", window.seen.msg);
}"""
APPLY_S = 60_000  # ms: the whole real apply, generous for a busy CI machine


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def open_page(browser: Browser, url: str) -> Page:
    context = browser.new_context(locale="uk-UA", viewport={"width": 1024, "height": 768})
    page = context.new_page()
    page.clock.install()  # the 10 s reload after `done` is run forward, not waited for
    page.goto(url)
    return page


def sign_in(page: Page) -> None:
    for digit in PIN:
        page.click(f".key[data-key='{digit}']")
    with page.expect_navigation():  # the page reloads itself signed in
        page.click("#login-button")


def test_operator_applies_the_update_and_sees_the_new_version(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path, browser: Browser) -> None:
    migrate_site(site)
    (site.install_path / "app").mkdir()
    (site.install_path / "app/main.py").write_bytes(b"print('1.0.0')\n")
    make_pending(site, publish(tmp_path, admin_keys[0], "1.1.0", NEW_FILES, GOOD_SQL))
    with running_portal(site) as portal, runner_thread(site):
        page = open_page(browser, f"http://127.0.0.1:{portal.port}/")
        expect(page.locator("#login-title")).to_have_text("Вхід для оператора")
        sign_in(page)
        expect(page.locator("#badge")).to_have_text("Отримано оновлення v1.1.0")
        expect(page.locator("#current-version")).to_have_text("1.0.0")
        page.screenshot(path=tmp_path / "1-status.png")

        page.click("#badge")
        dialog = page.locator("#update-dialog")
        expect(dialog).to_be_visible()
        expect(dialog.locator("#dialog-title")).to_have_text("Оновлення v1.1.0")
        expect(dialog.locator("#dialog-notes")).to_have_text(NOTES)
        expect(dialog.locator("#dialog-received")).to_have_text(re.compile(r"^\d{1,2} \S+ \d{4}"))
        page.screenshot(path=tmp_path / "2-dialog.png")
        page.click("#later")
        expect(dialog).to_be_hidden()

        page.evaluate(WATCH_PROGRESS)
        page.click("#review")
        page.click("#apply")
        expect(page.locator("#progress-card")).to_be_visible()
        expect(page.locator("#bar-pct")).to_have_text("100%", timeout=APPLY_S)
        seen = page.evaluate("window.seen")
        shown = [int(p.rstrip("%")) for p in seen["pct"]]
        assert shown == sorted(shown) and shown[-1] == 100 and len(set(shown)) >= 4, shown
        assert set(SEED_MESSAGES) <= set(seen["msg"]), seen["msg"]
        expect(page.locator("#done-card")).to_be_visible()
        expect(page.locator("#steps li.done")).to_have_count(4)
        expect(page.locator("#reload-msg")).to_contain_text("Сторінка оновиться через")
        page.screenshot(path=tmp_path / "3-done.png")

        page.clock.run_for(11_000)
        expect(page.locator("#current-version")).to_have_text("1.1.0")
        expect(page.locator("#badge")).to_be_hidden()
        expect(page.locator("#idle-none")).to_be_visible()
        expect(page.locator("#last-result")).to_contain_text("Останнє оновлення встановлено")
        page.screenshot(path=tmp_path / "4-after-reload.png")

    assert (site.install_path / "app/main.py").read_bytes() == NEW_FILES["app/main.py"]
    steps = [e["step"] for e in read_events(site.state.events) if e.get("kind") == "apply"]
    assert steps[0] == "verify" and steps[-1] == "done"
    assert {"backup", "patch", "migrate", "restart"} <= set(steps)


def test_a_failed_apply_shows_the_reason_and_that_the_old_version_runs(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path, browser: Browser) -> None:
    migrate_site(site)
    make_pending(site, publish(tmp_path, admin_keys[0], "1.1.0", NEW_FILES, BAD_SQL))
    with running_portal(site) as portal, runner_thread(site):
        page = open_page(browser, f"http://127.0.0.1:{portal.port}/?lang=en")
        sign_in(page)
        page.click("#badge")
        expect(page.locator("#apply")).to_have_text("Apply")
        page.evaluate(WATCH_PROGRESS)
        page.click("#apply")
        failed = page.locator("#failed-card")
        expect(failed).to_be_visible(timeout=APPLY_S)
        assert "Restoring the previous version..." in page.evaluate("window.seen.msg")
        expect(failed.locator("h1")).to_contain_text("Update not installed")
        expect(page.locator("#failed-reason")).to_have_text("The database could not be updated.")
        expect(page.locator("#failed-old")).to_have_text(
            "The previous version v1.0.0 is still running: nothing in it was changed.")
        page.locator("#failed-card summary").click()
        expect(page.locator("#failed-details")).to_contain_text("no_such_column")
        page.screenshot(path=tmp_path / "5-failed.png")
        page.click("#failed-close")
        expect(page.locator("#badge")).to_have_text("Update received: v1.1.0")
        page.reload()  # the stream replays the last apply: the page still says what happened
        expect(page.locator("#last-result")).to_contain_text("The database could not be updated.")
        expect(page.locator("#current-version")).to_have_text("1.0.0")

    assert site.state.installed_version() == "1.0.0"
    assert not (site.install_path / "app/alarms.py").exists()


def test_a_page_reloaded_mid_apply_follows_it_to_the_end_and_reloads_once(
        bare_site: Config, admin_keys: tuple[Path, Path], tmp_path: Path, browser: Browser) -> None:
    """The runner's side is played by the test here (events appended, the job moved on),
    to put the page exactly where it must not go wrong: reloaded mid-apply, and
    loaded again after `done`, which must not reload it forever."""
    make_pending(bare_site, publish(tmp_path, admin_keys[0], "1.1.0", NEW_FILES))
    spool = Spool(bare_site.state)
    job_id = spool.submit("apply", {"sha256": "0" * 64})
    running = spool.claim(job_id + ".json")
    assert running is not None
    job = {"id": job_id, "kind": "apply"}
    emit(bare_site.state.events, job, "verify", 0, SEED_MESSAGES[0])
    emit(bare_site.state.events, job, "backup", 20, SEED_MESSAGES[1])
    with running_portal(bare_site) as portal:
        page = open_page(browser, f"http://127.0.0.1:{portal.port}/")
        sign_in(page)
        expect(page.locator("#bar-pct")).to_have_text("20%")
        expect(page.locator("#step-msg")).to_have_text(SEED_MESSAGES[1])
        emit(bare_site.state.events, job, "patch", 40, SEED_MESSAGES[2])
        expect(page.locator("#bar-pct")).to_have_text("40%")
        page.reload()
        expect(page.locator("#progress-card")).to_be_visible()
        expect(page.locator("#bar-pct")).to_have_text("40%")
        expect(page.locator("#steps li.done")).to_have_count(2)

        spool.finish(running, spool.load(job_id), "done")
        emit(bare_site.state.events, job, "done", 100, "Готово")
        expect(page.locator("#done-card")).to_be_visible()
        page.clock.run_for(11_000)
        expect(page.locator("#last-result")).to_contain_text("Останнє оновлення встановлено")
        page.evaluate("window.loadedOnce = true")
        page.clock.run_for(15_000)
        assert page.evaluate("window.loadedOnce === true"), "the page reloaded again"
        expect(page.locator("#done-card")).to_be_hidden()
        expect(page.locator("#status-card")).to_be_visible()


def test_a_full_disk_is_told_in_plain_words_not_blamed_on_the_package(
        bare_site: Config, admin_keys: tuple[Path, Path], tmp_path: Path, browser: Browser) -> None:
    """The runner's side is played by the test: an apply that stopped in `verify` because
    the disk is full. The page must not say the administrator's package failed its check."""
    make_pending(bare_site, publish(tmp_path, admin_keys[0], "1.1.0", NEW_FILES))
    spool = Spool(bare_site.state)
    job_id = spool.submit("apply", {"sha256": "0" * 64})
    running = spool.claim(job_id + ".json")
    assert running is not None
    error = "not enough free disk space for this update: it needs 150 MB, 10 MB is free"
    job = {**spool.load(job_id), "state": "failed", "error": f"step verify failed: {error}",
           "error_type": "DiskSpaceError",
           "steps": [{"name": "verify", "phase": "main", "state": "failed", "error": error,
                      "error_type": "DiskSpaceError"}]}
    spool.finish(running, job, "failed")
    emit(bare_site.state.events, job, "failed", 0, job["error"])
    with running_portal(bare_site) as portal:
        page = open_page(browser, f"http://127.0.0.1:{portal.port}/?lang=en")
        sign_in(page)
        result = page.locator("#last-result")
        expect(result).to_contain_text("There is not enough free disk space for the update")
        expect(result).not_to_contain_text("failed its check")
        expect(page.locator("#badge")).to_have_text("Update received: v1.1.0")
