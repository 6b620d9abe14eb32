"""Every CSV the application writes neutralises formula cells (OWASP: a leading ' before = + - @ tab CR)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from django.core.cache import cache
from django.urls import reverse

from erp.models import RoutingOperation
from routing_ml.csv_export import neutralise
from tests.fixtures_model import *  # noqa: F403

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "value, written",
    [
        ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("SLV-000123", "SLV-000123"),
        ("", ""),
        (-5.5, -5.5),
        (-3, -3),
        (None, None),
    ],
)
def test_formula_text_is_prefixed_and_numbers_stay_numbers(value, written):
    assert neutralise(value) == written


def test_downloaded_routing_csv_neutralises_uploaded_codes_and_erp_text(client, planner, trained_model):
    RoutingOperation.objects.update(res_dis="@SUM(1+1)*cmd|' /C calc'!A0")
    cache.delete("predictions:res_dis")
    client.force_login(planner)
    upload = io.BytesIO(b"ITEM_CD,PART_TYPE,OUTDIAMETER\n\"=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",SLEEVE,80\n-2+3,GLAND,120\n")
    upload.name = "new.csv"
    response = client.post("/predict/", {"form": "codes", "csv_file": upload})
    assert response.status_code == 302, response.context["codes_form"].errors
    qid = response["Location"].rstrip("/").rsplit("/", 1)[1]
    assert client.get(response["Location"]).status_code == 200

    text = client.get(reverse("predictions:download_csv", args=[qid])).content.decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows, text
    assert {r["ITEM_CD"] for r in rows} == {"'=HYPERLINK(\"http://evil\",\"x\")", "'-2+3"}
    assert {r["RES_DIS"] for r in rows if r["RES_CD"]} == {"'@SUM(1+1)*cmd|' /C calc'!A0"}
    # No cell of the file starts like a formula; the numeric columns are still plain numbers.
    assert not [cell for r in rows for cell in r.values() if cell and cell[0] in "=+-@\t\r"]
    assert all(float(r["RUN_TIME"]) >= 0 for r in rows if r["RUN_TIME"])


def test_every_csv_writer_of_the_application_goes_through_the_helper():
    """A new export that writes CSV directly would bypass the neutralising: only the helper (and the bench's generated data) may."""
    allowed = {"routing_ml/csv_export.py", "erp/management/commands/bench_import.py"}
    pattern = re.compile(r"csv\.writer\(|csv\.DictWriter\(|\.to_csv\(")
    offenders = []
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        if relative.split("/")[0] in {"tests", ".venv", "var"} or relative in allowed:
            continue
        if pattern.search(path.read_text(encoding="utf-8")):
            offenders.append(relative)
    assert offenders == []
