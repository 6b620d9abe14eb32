"""Planner pages: in a real headless Chromium (Playwright) against the live server, plus a few checks over the test client."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from urllib.parse import urlparse

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
    # Every page must run under our Content-Security-Policy: Chromium reports each blocked script or style.
    context.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => console.error("
        "'Content Security Policy violation: ' + e.violatedDirective + ' blocked ' + e.blockedURI));"
    )
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None)
    page.set_default_timeout(20_000)
    page.goto("/accounts/login/?next=/predict/")
    page.fill("#id_username", planner.username)
    page.fill("#id_password", "pw-" + planner.username)
    page.click("button[type=submit]")
    page.wait_for_url("**/predict/")
    yield page
    context.close()
    assert violations == [], violations


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
    # The similar items show a similarity bar and link to their ERP records, on a page planners may open.
    similar = first.locator("table.similar-items tbody tr")
    assert similar.count() > 0
    assert similar.first.locator(".bar > span").count() == 1
    link = similar.first.locator("a")
    neighbour = link.inner_text()
    assert link.get_attribute("href") == reverse("predictions:item", args=[neighbour])
    # The existing ERP routing is shown beside the prediction.
    assert first.locator("table.existing-routing tbody tr").count() > 0
    # Plotly (served from the installed package, no CDN) drew the time chart.
    page.wait_for_selector("#item-1-chart .main-svg")
    assert page.locator("#item-3 .errorlist").inner_text().startswith("Error 1002")

    link.click()
    page.wait_for_url(f"**{reverse('predictions:item', args=[neighbour])}")
    assert page.locator("#item-code").inner_text() == neighbour
    assert page.locator("table.current-routing tbody tr").count() > 0


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


def _tab_to(page, selector: str, limit: int = 60) -> None:
    """Press Tab until `selector` has the focus (as a keyboard-only user would)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement === document.querySelector(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def _show_result(page, codes_text: str) -> None:
    page.fill("#id_codes", codes_text)
    page.click("#codes-form button[type=submit]")
    page.wait_for_url(re.compile(r"/predict/r/[^/]+/$"))


@pytest.mark.browser
def test_keyboard_alone_submits_codes(page):
    code = _codes(1)[0]

    # The skip link comes first and is visible when focused.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.classList.contains('skip')")
    _tab_to(page, "#id_codes")
    page.keyboard.type(code)
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    _tab_to(page, "#codes-form button[type=submit]")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/predict/r/[^/]+/$"))
    assert page.locator("#item-1 h2").inner_text().startswith(code)
    assert page.locator("#item-1 table.predicted-routing tbody tr").count() > 0


@pytest.mark.browser
def test_keyboard_alone_downloads_the_csv_from_the_result_page(page):
    codes = _codes(2)
    _show_result(page, "\n".join(codes))

    _tab_to(page, "#download-csv")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    with page.expect_download() as download_info:
        page.keyboard.press("Enter")
    rows = list(csv.reader(io.StringIO(open(download_info.value.path(), encoding="utf-8").read())))
    assert tuple(rows[0]) == ERP_ROUTING_COLUMNS
    assert {row[0] for row in rows[1:]} == set(codes)


@pytest.mark.browser
def test_result_and_item_pages_fit_a_laptop_screen(page):
    assert page.viewport_size == {"width": 1366, "height": 768}
    # Many items, the widest tables (50 similar items), an error and a new item: the page must not scroll sideways.
    page.fill("#id_top_k", "50")
    _show_result(page, "\n".join([*_codes(4), "NO-SUCH-ITEM-WITH-A-RATHER-LONG-CODE-0123456789"]))
    page.wait_for_selector("#item-1-chart .main-svg")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )

    page.locator("#item-1 table.similar-items tbody a").first.click()
    page.wait_for_url(re.compile(r"/items/[^/]+/$"))
    assert page.locator("table.current-routing tbody tr").count() > 0
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )


@pytest.mark.browser
def test_new_item_form_shows_the_validation_error_next_to_the_field(page):
    page.fill("#id_new-PART_TYPE", "SLEEVE")
    page.fill("#id_new-OUTDIAMETER", "50")
    page.fill("#id_new-INDIAMETER", "60")
    page.click("#new-item-form button[type=submit]")

    field = page.locator("p.field:has(#id_new-INDIAMETER)")
    assert "Must be smaller than the outer diameter (50 mm)" in field.locator(".field-error").inner_text()
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


def test_downloads_are_counted_apart_from_the_page(client, planner, trained_model):
    from prometheus_client import REGISTRY

    def ok(channel: str) -> float:
        return REGISTRY.get_sample_value("routing_ml_predictions_total", {"status": "ok", "channel": channel}) or 0.0

    client.force_login(planner)
    codes = _codes(2)
    result_url = _post_codes(client, codes="\n".join(codes))
    qid = result_url.rstrip("/").rsplit("/", 1)[1]
    before = {channel: ok(channel) for channel in ("page", "export")}

    assert client.get(result_url).status_code == 200
    assert client.get(reverse("predictions:download_csv", args=[qid])).status_code == 200
    assert client.get(reverse("predictions:download_json", args=[qid])).status_code == 200

    # One planner query shown once and downloaded twice: two items on the page channel, four re-run for export.
    assert ok("page") - before["page"] == 2
    assert ok("export") - before["export"] == 4


# ------------------------------------------------------------------------------------------------
# The planner's item page
# ------------------------------------------------------------------------------------------------

ITEM = "ZZ-PAGE-TEST-1"


def _cells(html: str, table_class: str) -> list[list[str]]:
    """The text of each body cell of `<table class="table_class">`, row by row."""
    table = re.search(rf'<table class="{table_class}"[^>]*>(.*?)</table>', html, re.S)
    assert table, f"no table.{table_class} on the page"
    body = re.search(r"<tbody>(.*?)</tbody>", table.group(1), re.S).group(1)
    return [
        [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


@pytest.fixture
def known_item(db):
    """An item with a current routing (one operation timed in hours), an outdated routing and 55 work orders."""
    from datetime import UTC, datetime, timedelta

    from erp.models import WorkResult

    Item.objects.create(item_cd=ITEM, item_nm="Test sleeve", part_type="SLEEVE", item_material="SUS316", outdiameter=82.5, indiameter=60.0)
    old, new = datetime(2023, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)
    RoutingOperation.objects.bulk_create(
        [
            RoutingOperation(item_cd=ITEM, rout_no="001", proc_seq=10, job_cd="OLD", time_unit="MIN", setup_time=1, run_time=1, insrt_dt=old),
            RoutingOperation(
                item_cd=ITEM, rout_no="002", proc_seq=10, job_cd="TURN", job_nm="Turning", res_cd="L-01", inside_flag="IN",
                time_unit="MIN", setup_time=30, run_time=12, run_time_qty=4, insrt_dt=new,
            ),
            RoutingOperation(
                item_cd=ITEM, rout_no="002", proc_seq=20, job_cd="HEAT", job_nm="Heat treatment", res_cd="OUT-HT", inside_flag="OUT",
                time_unit="HR", setup_time=0.5, run_time=0.1, run_time_qty=1, insrt_dt=new,
            ),
        ]
    )  # fmt: skip
    start = datetime(2024, 2, 1, 12, tzinfo=UTC)
    WorkResult.objects.bulk_create(
        [
            WorkResult(
                item_cd=ITEM, rout_no="002", proc_seq=10, job_cd="TURN", res_cd="L-01", report_dt=start + timedelta(days=day),
                order_qty=40, bad_qty=0, setup_hours=0.5, mach_worked_hours=2.0,
            )
            for day in range(54)
        ]
        + [
            WorkResult(
                item_cd=ITEM, rout_no="002", proc_seq=10, job_cd="TURN", res_cd="L-02", report_dt=start + timedelta(days=60),
                order_qty=60, bad_qty=2, setup_hours=0.75, mach_worked_hours=2.5,
            )
        ]
    )  # fmt: skip
    return ITEM


def test_planner_reads_an_items_master_data_routing_and_recent_work_orders(client, planner, known_item):
    client.force_login(planner)
    response = client.get(reverse("predictions:item", args=[known_item]))

    assert response.status_code == 200
    html = response.content.decode()
    master = {row[0].rsplit(" ", 1)[1]: row[1] for row in _cells(html, "item-master")}
    assert [master[c] for c in ("ITEM_NM", "PART_TYPE", "OUTDIAMETER", "INDIAMETER")] == ["Test sleeve", "SLEEVE", "82.5", "60.0"]
    assert master["DRAW_NO"] == "—"
    # The current routing (the newest), in minutes, run time per unit: 12 min per 4 units; 0.1 h per unit.
    assert _cells(html, "current-routing") == [
        ["10", "TURN Turning", "L-01", "in-house", "30.0", "3.000"],
        ["20", "HEAT Heat treatment", "OUT-HT", "outsourced", "30.0", "6.000"],
    ]
    # The 50 most recent work orders, newest first: 0.75 h setup = 45 min; 2.5 machine hours × 60 / 60 units = 2.5 min per unit.
    work = _cells(html, "work-results")
    assert len(work) == 50
    assert work[0] == ["2024-04-01", "10", "TURN", "L-02", "60", "2", "45.0", "2.50", "2.500"]
    assert work[1] == ["2024-03-25", "10", "TURN", "L-01", "40", "0", "30.0", "2.00", "3.000"]
    assert "The 50 most recent of 55 work-order operations" in html
    assert "Open in the admin" not in html  # planners are not staff


def test_result_page_links_similar_items_and_the_existing_routing_to_the_item_page(client, planner, trained_model):
    client.force_login(planner)
    code = _codes(1)[0]
    html = client.get(_post_codes(client, codes=code)).content.decode()

    links = set(re.findall(r'href="(/items/[^"]+/)"', html))
    assert reverse("predictions:item", args=[code]) in links  # the predicted item's own record and routing
    assert len(links) > 1  # …and the similar items
    assert all(client.get(link).status_code == 200 for link in sorted(links)[:5])
    assert "/admin/" not in html


def test_unknown_item_page_is_a_404_page(client, planner, db):
    client.force_login(planner)
    response = client.get(reverse("predictions:item", args=["NO-SUCH-ITEM"]))
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert "There is no item <strong>NO-SUCH-ITEM</strong> in the item master." in response.content.decode()


def test_item_page_needs_a_login_and_the_predict_permission(client, outsider, known_item):
    url = reverse("predictions:item", args=[known_item])
    response = client.get(url)
    assert response.status_code == 302 and response["Location"] == f"/accounts/login/?next={url}"

    client.force_login(outsider)
    assert client.get(url).status_code == 403


@pytest.mark.browser
def test_api_docs_render_from_our_own_files_without_internet(page):
    hosts: set[str] = set()
    page.on("request", lambda request: hosts.add(urlparse(request.url).hostname))
    page.goto("/api/docs/")
    page.wait_for_selector("#operations-predictions-predictions_create")
    assert hosts == {urlparse(page.url).hostname}  # nothing fetched from a CDN


@pytest.mark.browser
def test_planner_accepts_one_routing_and_edits_another_in_the_browser(page, trained_model):
    from predictions.models import RoutingReview

    codes = _codes(2)
    _show_result(page, "\n".join(codes))
    result_url = page.url

    # Accept the first item's routing from the result page, with a comment, keyboard only.
    _tab_to(page, "#item-1-comment")
    page.keyboard.type("matches the drawing")
    _tab_to(page, "#item-1 button.accept")
    page.keyboard.press("Enter")
    page.wait_for_url(result_url + "#item-1")
    assert page.locator("#item-1 .review-state").inner_text() == "accepted"
    assert page.locator("table").first.locator("tbody tr").nth(0).locator("td").last.inner_text() == "accepted"

    # Edit the second: move its last operation up, remove its first, add one, save.
    page.click("#item-2 a.edit")
    page.wait_for_url(re.compile(r"/review/"))
    rows = page.locator("#edit-rows tr.op-row")
    before = [rows.nth(i).locator("select").first.input_value() for i in range(rows.count())]
    assert len(before) >= 2
    rows.nth(len(before) - 1).get_by_role("button", name=re.compile("Move up")).click()
    rows.nth(0).get_by_role("button", name=re.compile("Remove")).click()
    page.click("#add-operation")
    new_row = page.locator("#edit-rows tr.op-row").last
    job = new_row.locator("select").nth(0)
    job.select_option(index=1)
    new_row.locator("select").nth(1).select_option(index=1)
    new_row.locator("select").nth(2).select_option("OUT")
    new_row.locator("input[type=number]").nth(0).fill("15")
    new_row.locator("input[type=number]").nth(1).fill("0.4")
    added_job = job.input_value()
    page.fill("#id_edit_comment", "outsourced finish")
    page.click("#save-edited")
    page.wait_for_url(result_url)

    moved_up = [*before[:-2], before[-1], before[-2]]
    review = RoutingReview.objects.get(item_cd=codes[1])
    assert review.decision == "edited" and review.comment == "outsourced finish"
    assert review.decided["signature"] == [*moved_up[1:], added_job]
    assert review.decided["operations"][-1]["inside_flag"] == "OUT" and review.decided["operations"][-1]["setup_minutes"] == 15.0
    assert page.locator("table").first.locator("tbody tr").nth(1).locator("td").last.inner_text() == "edited"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


# ------------------------------------------------------------------------------------------------
# Big batches
# ------------------------------------------------------------------------------------------------

BIG_BATCH = 1000
BIG_PAGE_MAX_BYTES = 400_000


def _thousand_codes(unknown: int = 3) -> list[str]:
    """BIG_BATCH codes of the item master (the demo items, then copies of them added "since training"), the last `unknown` not in it."""
    from django.forms.models import model_to_dict

    demo = list(Item.objects.order_by("item_cd"))
    wanted = BIG_BATCH - unknown - len(demo)
    copies = [Item(**{**model_to_dict(demo[i % len(demo)]), "item_cd": f"ZZ-COPY-{i:04d}"}) for i in range(wanted)]
    Item.objects.bulk_create(copies)
    return [*(i.item_cd for i in demo), *(c.item_cd for c in copies), *(f"NO-SUCH-{i}" for i in range(unknown))]


def test_thousand_item_result_page_is_small_with_the_summary_first_and_failures_listed(client, planner, trained_model):
    client.force_login(planner)
    codes = _thousand_codes()
    result_url = _post_codes(client, codes="\n".join(codes))
    response = client.get(result_url)

    html = response.content.decode()
    size = len(response.content)
    print(f"\n1,000-item result page: {size / 1024:.0f} KiB of HTML")
    assert size <= BIG_PAGE_MAX_BYTES
    summary = _cells(html, "summary")
    assert len(summary) == BIG_BATCH
    assert html.index('class="summary"') < html.index('class="item-block"')  # the summary table comes first
    ok_row = summary[0]
    assert ok_row[0] == codes[0] and ok_row[1] == "ok" and re.fullmatch(r"\d+ %", ok_row[3]) and ok_row[5] == "awaiting"
    assert summary[-1] == ["NO-SUCH-2", "error", "item NO-SUCH-2 not found in the item master"]
    # Details: one page of 10 items, collapsed; the others are a link away.
    assert html.count('<details class="item-block"') == 10 and " open>" not in html
    assert f'href="?page=2#item-11">{codes[10]}</a>' in html
    last_page = client.get(result_url + "?page=100").content.decode()
    assert last_page.count('<details class="item-block"') == 10 and 'id="item-1000"' in last_page
    # Failed codes are listed with their reason, and in both downloads.
    failed = re.search(r'<ul class="failed-items">(.*?)</ul>', html, re.S).group(1)
    assert [re.sub(r"<[^>]+>", "", li) for li in re.findall(r"<li>(.*?)</li>", failed)] == [
        f"NO-SUCH-{i}: item NO-SUCH-{i} not found in the item master" for i in range(3)
    ]
    qid = result_url.rstrip("/").rsplit("/", 1)[1]
    rows = list(csv.DictReader(io.StringIO(client.get(reverse("predictions:download_csv", args=[qid])).content.decode())))
    assert [(r["ITEM_CD"], r["ERROR"]) for r in rows if r["ERROR"]] == [
        (f"NO-SUCH-{i}", f"item NO-SUCH-{i} not found in the item master") for i in range(3)
    ]
    assert {r["ITEM_CD"] for r in rows if not r["ERROR"]} == set(codes[:-3])
    data = client.get(reverse("predictions:download_json", args=[qid])).json()
    assert [r["item_cd"] for r in data["results"] if r["status"] == "error"] == codes[-3:]


@pytest.mark.browser
def test_thousand_item_result_page_is_usable_in_chromium_within_a_second(page):
    codes = _thousand_codes()
    page.fill("#id_codes", "\n".join(codes))
    page.click("#codes-form button[type=submit]")
    page.wait_for_url(re.compile(r"/predict/r/[^/]+/$"))
    timing = page.evaluate(
        """() => { const t = performance.getEntriesByType("navigation")[0];
        return {server: t.responseStart - t.requestStart, download: t.responseEnd - t.responseStart,
                ready: t.domContentLoadedEventEnd - t.responseStart, load: t.loadEventEnd - t.responseStart, bytes: t.decodedBodySize}; }"""
    )
    print(f"\n1,000-item result page in Chromium: {timing}")
    assert timing["ready"] < 1000  # parsed, laid out and scripted within a second of the first byte
    assert page.locator("table.summary tbody tr").count() == BIG_BATCH
    assert page.locator("table.summary").is_visible()
    # Opening an item shows its detail and draws its chart on demand.
    page.locator("#item-2 > summary").click()
    page.wait_for_selector("#item-2-chart .main-svg")
    assert page.locator("#item-2 table.predicted-routing tbody tr").count() > 0
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.browser
def test_time_chart_puts_setup_and_run_on_separate_panels_with_round_ticks(page):
    _show_result(page, _codes(1)[0])
    page.wait_for_selector("#item-1-chart .main-svg")
    layout = page.evaluate(
        """() => { const l = document.getElementById("item-1-chart")._fullLayout;
        return {overlaying: l.yaxis2.overlaying || null, x: l.xaxis.domain, x2: l.xaxis2.domain,
                ticks: [l.yaxis, l.yaxis2].map(a => a._vals.map(v => v.x))}; }"""
    )
    assert layout["overlaying"] is None and layout["x"][1] < layout["x2"][0]  # side by side, one quantity each
    for ticks in layout["ticks"]:
        assert ticks[0] == 0 and len(ticks) >= 2
        step = ticks[1] - ticks[0]
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert round(mantissa, 6) in (1, 2, 2.5, 5), ticks  # 0, 0.5, 1… or 0, 20, 40…: never 1.8 / 3.59 / 5.39


@pytest.mark.browser
def test_quality_dashboards_draw_their_charts_under_the_content_security_policy(page, trained_model):
    from quality.cycle import run_cycle

    assert run_cycle(sample_size=30).status == "succeeded"
    for path in ("/quality/", "/quality/history/"):
        response = page.goto(path)
        assert "script-src 'self' 'nonce-" in response.headers["content-security-policy"]
        assert "camera=()" in response.headers["permissions-policy"]
        page.wait_for_selector(".plotly-graph-div .main-svg")  # the inline Plotly script ran: its nonce was accepted
    # One version only: no chart, so no nonce in the policy; the page still loads without a violation.
    response = page.goto("/quality/compare/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
