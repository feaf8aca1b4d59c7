"""The console in a real browser: log in, create a campaign, play a survey on the simulator keypad to
the end, see it on the dashboard, answer the case it opened. Select with `-m browser`.

A failing test leaves a screenshot in tests/artifacts/ (see the hook in conftest.py).
"""

from __future__ import annotations

import os
import re

import pytest
from browser import ADMIN_PASSWORD, CHROMIUM, CHROMIUM_ARGS, live_console
from sqlalchemy import select

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} missing (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def console(backend, fresh_db_url):
    if backend != "sqlite":
        pytest.skip("the browser tests run once, on SQLite")
    with live_console(fresh_db_url) as live:
        yield live


@pytest.fixture
def page(chromium, console, request):
    context = chromium.new_context(locale="zh-CN", base_url=console.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # A request the next navigation cancels (the favicon, mid-click) is aborted, not broken.
    page.on(
        "requestfailed",
        lambda req: None if "ERR_ABORTED" in (req.failure or "") else errors.append(f"failed: {req.url}"),
    )
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        from conftest import save_screenshot

        save_screenshot(page, request.node.name)
    context.close()
    assert not errors, errors


def log_in(page) -> None:
    page.goto("/login")
    page.fill("#username", "admin")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("#login")
    page.wait_for_url(re.compile(r"/$"))


def play_bad_review(page, item: str) -> None:
    """Call an item on the keypad: very dissatisfied, categories delay and cold, a 5 s comment."""
    page.goto("/simulator")
    page.select_option("#sim-item", item)
    page.click("#sim-call")
    page.wait_for_selector("#keypad-form")
    assert "非常满意请按1" in page.inner_text("#said")
    page.click(".keypad .key[data-key='5']")
    page.click("#send-keys")
    page.wait_for_selector("text=不满意的原因")
    for key in "35#":
        page.click(f".keypad .key[data-key='{key}']")
    assert page.input_value("#keys") == "35#"
    page.click("#send-keys")
    page.wait_for_selector("#record-form")
    page.fill("#seconds", "5")
    page.click("#record")
    page.wait_for_selector("#call-ended")


def test_log_in_create_a_campaign_play_a_survey_and_see_it_on_the_dashboard(page, console):
    log_in(page)
    page.goto("/campaigns/new")
    page.fill("#name", "浏览器测试回访")
    page.select_option("#status", "active")
    page.select_option("#departments", ["SWJ", "SCJ"])
    page.click("#preview")
    page.wait_for_selector("#previews")
    assert "回复TD退订" in page.inner_text("#previews")
    page.click("#save")
    page.wait_for_selector("#campaign-status")
    assert page.inner_text("#campaign-status") == "进行中"

    play_bad_review(page, "WEB-1")
    assert "完成" in page.inner_text("#call-outcome")

    page.goto("/")
    assert page.inner_text("#today-completed") == "1"
    assert "139****9001" in page.inner_text("#live")
    assert page.locator("#quarter-figures").inner_text().count("税务局") == 1


def test_answer_the_case_opened_by_a_bad_review(page, console):
    from models.cases import Case

    log_in(page)
    play_bad_review(page, "WEB-3")
    with console.sessions() as session:
        case = session.scalars(select(Case)).first()
    assert case is not None, "the bad review played in the simulator must open a case"
    page.goto("/cases")
    page.click(f"a[href='/cases/{case.id}']")
    page.fill("#feedback", "已约谈窗口工作人员，限期整改")
    page.click("#answer")
    page.wait_for_selector("#case-state")
    assert "已答复" in page.inner_text("#case-state")
    assert "已约谈窗口工作人员" in page.inner_text("#history")


PHONE_PAGES = ("/", "/departments", "/items", "/items/import", "/campaigns", "/campaigns/new", "/results",
               "/cases", "/quarter", "/optouts", "/simulator", "/audit")
LAYOUT = """() => {
  const header = document.querySelector('header.top').getBoundingClientRect();
  const nav = document.querySelector('header.top nav').getBoundingClientRect();
  const charts = [...document.querySelectorAll('svg.chart')].map(
    svg => svg.getBoundingClientRect().width / svg.width.baseVal.value);
  return {scroll: document.documentElement.scrollWidth, view: document.documentElement.clientWidth,
          header: header.height, nav: nav.width, chartScales: charts};
}"""


def test_on_a_phone_in_chinese_the_menu_wraps_and_no_page_scrolls_sideways(page, console):
    missing: list[str] = []
    page.on("response", lambda response: missing.append(response.url) if response.status >= 400 else None)
    page.set_viewport_size({"width": 375, "height": 740})
    log_in(page)
    play_bad_review(page, "WEB-1")  # a result, a case and charts with a bar
    for url in PHONE_PAGES:
        page.goto(url)
        layout = page.evaluate(LAYOUT)
        assert layout["scroll"] <= layout["view"] == 375, (url, layout)
        assert layout["nav"] > 300 and layout["header"] < 160, (url, layout)  # not a column of characters
        assert all(scale > 0.99 for scale in layout["chartScales"]), (url, layout)  # 12px chart text
    assert missing == []  # no /favicon.ico (or anything else) not found
