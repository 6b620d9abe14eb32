"""Every planner page in real Chromium at 1366×768: no sideways scrolling, no console error, no serious axe-core violation,
and the review flow by keyboard alone."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from erp.models import Item, RoutingOperation
from tests.fixtures_model import *  # noqa: F403
from tests.test_predictions_pages import _tab_to, browser  # noqa: F401  (the module-scoped Chromium)

SERIOUS = {"serious", "critical"}


def _codes(n: int) -> list[str]:
    qs = Item.objects.filter(item_cd__in=RoutingOperation.objects.values("item_cd"))
    return list(qs.order_by("item_cd").values_list("item_cd", flat=True)[:n])


@pytest.fixture
def planner_page(browser, live_server, transactional_db, trained_model, planner):  # noqa: F811
    context = browser.new_context(viewport={"width": 1366, "height": 768}, base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.errors = []
    page.on("console", lambda message: page.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto("/accounts/login/?next=/")
    page.fill("#id_username", planner.username)
    page.fill("#id_password", "pw-" + planner.username)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/")
    yield page
    context.close()


def _check(page, what: str) -> list[str]:
    """Problems of the page now shown: sideways scrolling, console errors, serious accessibility violations."""
    from axe_playwright_python.sync_playwright import Axe

    problems = []
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if width[0] > width[1]:
        problems.append(f"{what}: scrolls sideways ({width[0]} px > {width[1]} px)")
    problems += [f"{what}: console error {e}" for e in page.errors]
    page.errors.clear()
    results = Axe().run(page)
    for violation in results.response["violations"]:
        if violation["impact"] in SERIOUS:
            targets = [node["target"] for node in violation["nodes"][:3]]
            problems.append(f"{what}: axe {violation['impact']} {violation['id']} ({violation['help']}) at {targets}")
    return problems


@pytest.mark.browser
def test_every_planner_page_fits_has_no_console_error_and_no_serious_accessibility_violation(planner_page):
    page = planner_page
    codes = _codes(3)
    problems = []
    for url in (
        "/",
        "/predict/",
        "/reviews/",
        "/quality/",
        "/quality/history/",
        "/quality/compare/",
        reverse("predictions:item", args=[codes[0]]),
    ):
        page.goto(url)
        problems += _check(page, url)

    page.goto("/predict/")
    page.fill("#id_codes", "\n".join([*codes, "NO-SUCH-ITEM"]))
    page.click("#codes-form button[type=submit]")
    page.wait_for_url(re.compile(r"/predict/r/[^/]+/$"))
    page.wait_for_selector("#item-1-chart .main-svg")
    problems += _check(page, "result page")

    page.goto(reverse("predictions:review", args=[codes[0]]))
    problems += _check(page, "review page")
    page.click("#save-edited")  # nothing changed: saved as edited, back on the review page
    page.wait_for_selector("#current-decision")
    problems += _check(page, "review page after saving")
    assert problems == []


@pytest.mark.browser
def test_keyboard_alone_edits_a_routing_on_the_review_page(planner_page):
    from predictions.models import RoutingReview

    page = planner_page
    code = _codes(1)[0]
    page.goto(reverse("predictions:review", args=[code]))
    jobs = [
        page.locator("#edit-rows tr.op-row").nth(i).locator("select").first.input_value()
        for i in range(page.locator("#edit-rows tr.op-row").count())
    ]
    assert len(jobs) >= 2

    # Move the second operation up: Tab to its "Move up" button, press Enter.
    _tab_to(page, "#edit-rows tr.op-row:nth-child(2) button[aria-label^='Move up']", limit=120)
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.press("Enter")
    # Add an operation and choose its job with the keyboard: focus lands in the new row's job list.
    _tab_to(page, "#add-operation", limit=200)
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.name.endsWith('-job_cd')")
    page.keyboard.press("ArrowDown")
    added = page.evaluate("document.activeElement.value")
    page.keyboard.press("Tab")
    page.keyboard.press("ArrowDown")  # work centre
    page.keyboard.press("Tab")
    page.keyboard.press("ArrowDown")  # in-house
    page.keyboard.press("Tab")
    page.keyboard.type("5")
    page.keyboard.press("Tab")
    page.keyboard.type("0.5")
    _tab_to(page, "#save-edited")
    page.keyboard.press("Enter")
    page.wait_for_selector("#current-decision")

    review = RoutingReview.objects.get(item_cd=code)
    assert review.decision == "edited"
    assert review.decided["signature"] == [jobs[1], jobs[0], *jobs[2:], added]


@pytest.fixture
def admin_page(browser, live_server, transactional_db, trained_model, ml_admin):  # noqa: F811
    context = browser.new_context(viewport={"width": 1366, "height": 768}, base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto("/accounts/login/?next=/")
    page.fill("#id_username", ml_admin.username)
    page.fill("#id_password", "pw-" + ml_admin.username)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/")
    yield page
    context.close()


@pytest.mark.browser
def test_admin_pages_fit_a_laptop_screen(admin_page):
    from quality.cycle import run_cycle
    from training.models import TrainingJob

    page = admin_page
    cycle = run_cycle(sample_size=20, strategy="random")
    job = TrainingJob.enqueue(label="long-params", parameters={"gate_items": [f"ITEM-{i:04d}" for i in range(500)]}, run_inline=True)
    wide = []
    for url in (
        reverse("admin:registry_modelversion_changelist"),
        reverse("admin:training_trainingjob_start"),
        reverse("admin:training_trainingjob_change", args=[job.pk]),
        reverse("admin:quality_qualitycycle_change", args=[cycle.pk]),
        reverse("admin:predictions_routingreview_changelist"),
    ):
        page.goto(url)
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if width[0] > width[1]:
            wide.append((url, width))
    assert wide == []
