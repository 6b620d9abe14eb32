"""Planner pages: in a real headless Chromium (Playwright) against the live server, plus a few checks over the test client."""

from __future__ import annotations

import csv
import io
import json
import os
import re

import pytest
from django.urls import reverse

from erp.models import Item, RoutingOperation
from predictions.service import ERP_ROUTING_COLUMNS
from tests.fixtures_model import *  # noqa: F403

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _codes(n: int, part_type: str | None = None) -> list[str]:
    qs = Item.objects.filter(item_cd__in=RoutingOperation.objects.values("item_cd"))
    if part_type:
        qs = qs.filter(part_type=part_type)
    return list(qs.order_by("item_cd").values_list("item_cd", flat=True)[:n])


# ------------------------------------------------------------------------------------------------
# Browser
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread, which Django's ORM would refuse. Set
    # only while the browser lives: a session-wide value would leak into subprocesses (check --deploy).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live_server, transactional_db, trained_model, planner):
    """A planner logged in through the login form, on a laptop-sized window."""
    context = browser.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True, base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto("/accounts/login/?next=/predict/")
    page.fill("#id_username", planner.username)
    page.fill("#id_password", "pw-" + planner.username)
    page.click("button[type=submit]")
    page.wait_for_url("**/predict/")
    yield page
    context.close()


@pytest.mark.browser
def test_planner_types_codes_and_reads_the_predicted_routing(page, trained_model):
    codes = _codes(2)
    page.fill("#id_codes", f"{codes[0]}, {codes[1]}\nNO-SUCH-ITEM")
    page.click("#codes-form button[type=submit]")
    page.wait_for_url(re.compile(r"/predict/r/[^/]+/$"))

    assert page.locator("#model-version").inner_text() == trained_model.label
    summary = page.locator("table").first.inner_text()
    assert codes[0] in summary and "item NO-SUCH-ITEM not found in the item master" in summary
    first = page.locator("#item-1")
    assert first.locator("h2").inner_text().startswith(codes[0])
    rows = first.locator("table.predicted-routing tbody tr")
    assert rows.count() >= 2
    header = first.locator("table.predicted-routing thead").inner_text()
    for column in ("Seq.", "Job", "Work centre", "In-house / outsourced", "Setup min", "Run min / unit", "Time source"):
        assert column in header
    assert re.search(r"\d+ % of similar items use this routing", first.locator(".confidence").inner_text())
    # The similar items link to their ERP records and show a similarity bar.
    similar = first.locator("table.similar-items tbody tr")
    assert similar.count() > 0
    assert similar.first.locator(".bar > span").count() == 1
    link = similar.first.locator("a")
    assert link.get_attribute("href") == reverse("admin:erp_item_change", args=[link.inner_text()])
    # The existing ERP routing is shown beside the prediction.
    assert first.locator("table.existing-routing tbody tr").count() > 0
    # Plotly (served from the installed package, no CDN) drew the time chart.
    page.wait_for_selector("#item-1-chart .main-svg")
    assert page.locator("#item-3 .errorlist").inner_text().startswith("Error 1002")


@pytest.mark.browser
def test_csv_download_is_in_the_erp_routing_layout(page):
    codes = _codes(3)
    page.fill("#id_codes", "\n".join(codes))
    page.click("#codes-form button[type=submit]")
    page.wait_for_url(re.compile(r"/predict/r/[^/]+/$"))
    shown = [page.locator(f"#item-{i} table.predicted-routing tbody tr").count() for i in (1, 2, 3)]

    with page.expect_download() as download_info:
        page.click("#download-csv")
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    rows = list(csv.reader(io.StringIO(open(download.path(), encoding="utf-8").read())))

    assert tuple(rows[0]) == ERP_ROUTING_COLUMNS
    body = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert len(body) == sum(shown)
    assert [r["ITEM_CD"] for r in body] == [c for c, n in zip(codes, shown, strict=True) for _ in range(n)]
    assert {r["TIME_UNIT"] for r in body} == {"MIN"} and {r["RUN_TIME_QTY"] for r in body} == {"1"}
    assert all(float(r["RUN_TIME"]) > 0 and r["INSIDE_FLAG"] in ("IN", "OUT") for r in body)

    with page.expect_download() as download_info:
        page.click("#download-json")
    data = json.loads(open(download_info.value.path(), encoding="utf-8").read())
    assert [r["item_cd"] for r in data["results"]] == codes


@pytest.mark.browser
def test_keyboard_alone_submits_codes(page):
    code = _codes(1)[0]

    def tab_to(selector: str, limit: int = 40) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate("(s) => document.activeElement === document.querySelector(s)", selector):
                return
        raise AssertionError(f"Tab never reached {selector}")

    # The skip link comes first and is visible when focused.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.classList.contains('skip')")
    tab_to("#id_codes")
    page.keyboard.type(code)
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    tab_to("#codes-form button[type=submit]")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/predict/r/[^/]+/$"))
    assert page.locator("#item-1 h2").inner_text().startswith(code)
    assert page.locator("#item-1 table.predicted-routing tbody tr").count() > 0


@pytest.mark.browser
def test_new_item_form_shows_the_validation_error_next_to_the_field(page):
    page.fill("#id_new-PART_TYPE", "SLEEVE")
    page.fill("#id_new-OUTDIAMETER", "50")
    page.fill("#id_new-INDIAMETER", "60")
    page.click("#new-item-form button[type=submit]")

    field = page.locator("p.field:has(#id_new-INDIAMETER)")
    assert "Must be smaller than OUTDIAMETER (50)" in field.locator(".field-error").inner_text()
    assert page.locator("#id_new-INDIAMETER").get_attribute("aria-invalid") == "true"
    assert page.input_value("#id_new-PART_TYPE") == "SLEEVE"

    page.fill("#id_new-INDIAMETER", "30")
    page.click("#new-item-form button[type=submit]")
    page.wait_for_url(re.compile(r"/predict/r/[^/]+/$"))
    assert page.locator("#item-1 h2").inner_text().startswith("New item 1")
    assert page.locator("#item-1 table.predicted-routing tbody tr").count() > 0


# ------------------------------------------------------------------------------------------------
# Test client: permissions, uploads, downloads
# ------------------------------------------------------------------------------------------------


def test_anonymous_is_sent_to_log_in(client, demo_erp):
    response = client.get("/predict/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_outsider_is_forbidden(client, outsider):
    client.force_login(outsider)
    assert client.get("/predict/").status_code == 403


def _post_codes(client, **data):
    response = client.post("/predict/", {"form": "codes", **data})
    assert response.status_code == 302, response.content.decode()[:2000]
    return response["Location"]


def test_uploaded_csv_of_codes_is_predicted(client, planner, trained_model):
    client.force_login(planner)
    codes = _codes(2)
    upload = io.BytesIO(("ITEM_CD;EXTRA\n" + "\n".join(f"{c};x" for c in codes)).encode())
    upload.name = "codes.csv"
    result_url = _post_codes(client, csv_file=upload)

    page = client.get(result_url)
    assert page.status_code == 200
    assert [r.item_cd for r in page.context["batch"].results] == codes
    assert "Ignored columns not in the item master: EXTRA." in page.content.decode()


def test_uploaded_csv_of_new_items_is_predicted(client, planner, trained_model):
    client.force_login(planner)
    upload = io.BytesIO("part_type,ITEM_MATERIAL,OUTDIAMETER\nSLEEVE,SUS316,80\nGLAND,,120\n".encode("cp949"))
    upload.name = "new.csv"
    result_url = _post_codes(client, csv_file=upload, top_k=5)

    batch = client.get(result_url).context["batch"]
    assert [r.source for r in batch.results] == ["attributes", "attributes"]
    assert batch.results[0].attributes == {"PART_TYPE": "SLEEVE", "ITEM_MATERIAL": "SUS316", "OUTDIAMETER": 80.0}
    assert all(len(r.similar_items) == 5 for r in batch.results)


def test_bad_rows_of_an_uploaded_csv_are_reported_with_their_line(client, planner, trained_model):
    client.force_login(planner)
    upload = io.BytesIO(b"PART_TYPE,OUTDIAMETER\nSLEEVE,80\nGLAND,wide\n")
    upload.name = "new.csv"
    response = client.post("/predict/", {"form": "codes", "csv_file": upload})
    assert response.status_code == 400
    assert response.context["codes_form"].errors["csv_file"] == ["line 3: OUTDIAMETER must be a number, not 'wide'."]


def test_empty_form_and_oversized_batch_are_refused_on_the_form(client, planner, trained_model, settings):
    client.force_login(planner)
    empty = client.post("/predict/", {"form": "codes", "codes": "  "})
    assert empty.status_code == 400
    assert "Enter item codes or choose a CSV file." in empty.content.decode()

    settings.PREDICTION_BATCH_LIMIT = 3
    many = client.post("/predict/", {"form": "codes", "codes": "A,B,C,D"})
    assert many.context["codes_form"].errors["codes"] == ["At most 3 items at a time; this has 4. Split the list."]


def test_downloads_rerun_the_same_query_on_the_version_that_answered(client, planner, trained_model, tmp_path_factory):
    from tests.fixtures_model import _trained_bundle, register_bundle

    client.force_login(planner)
    codes = _codes(2)
    result_url = _post_codes(client, codes="\n".join(codes))
    assert client.get(result_url).context["batch"].model_version == trained_model.label

    # Another version becomes active after the page was shown: the downloads still match the page.
    register_bundle(_trained_bundle(tmp_path_factory), "demo-v9", activate=True)
    qid = result_url.rstrip("/").rsplit("/", 1)[1]
    data = client.get(reverse("predictions:download_json", args=[qid])).json()
    assert data["model_version"] == trained_model.label
    assert [r["item_cd"] for r in data["results"]] == codes

    csv_response = client.get(reverse("predictions:download_csv", args=[qid]))
    assert csv_response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(csv_response.content.decode())))
    assert [r["JOB_CD"] for r in rows if r["ITEM_CD"] == codes[0]] == data["results"][0]["routing"]["signature"]


def test_result_without_an_active_model_says_so(client, planner, demo_erp):
    client.force_login(planner)
    result_url = _post_codes(client, codes=_codes(1)[0])
    response = client.get(result_url)
    assert response.status_code == 503
    assert "No model version is active" in response.content.decode()


def test_plotly_is_served_from_the_installed_package(client):
    import plotly

    response = client.get(reverse("predictions:plotly_js", args=[plotly.__version__]), HTTP_ACCEPT_ENCODING="gzip")
    assert response.status_code == 200 and response["Content-Encoding"] == "gzip"
    assert "immutable" in response["Cache-Control"]
    assert client.get(reverse("predictions:plotly_js", args=["0.0.0"])).status_code == 404
