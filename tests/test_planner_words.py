"""Words a planner uses: human labels for ERP columns, and a warning beside a prediction built on values the model never saw."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from erp.labels import COLUMN_LABELS
from erp.models import Item, RoutingOperation, WorkResult
from tests.fixtures_model import *  # noqa: F403

pytestmark = pytest.mark.postgres


def test_every_erp_column_has_a_label_and_the_models_use_it():
    for model in (Item, RoutingOperation, WorkResult):
        for field in model._meta.concrete_fields:
            if field.column == "ROW_ID":
                continue
            assert field.column in COLUMN_LABELS, field.column
            assert field.verbose_name == COLUMN_LABELS[field.column]


def test_forms_and_item_page_speak_in_words_not_column_names(client, planner, trained_model):
    client.force_login(planner)
    form = client.get("/predict/").content.decode()
    for words in ("Part type", "Outer diameter (mm)", "Inner diameter (mm)", "Seal type group", "Raw material kind"):
        assert f">{words}</label>" in form
    assert not re.search(r"<label[^>]*>[^<]*(Sealtypegrup|Outdiameter|Part nm)", form)

    code = Item.objects.order_by("item_cd").values_list("item_cd", flat=True).first()
    page = client.get(reverse("predictions:item", args=[code])).content.decode()
    assert "Part name <span" in page and "Rotates counter-clockwise <span" in page and "Rotate ctrclockwise" not in page


def test_cross_field_error_names_the_dimension(client, planner, trained_model):
    client.force_login(planner)
    response = client.post("/predict/", {"form": "new", "new-PART_TYPE": "SLEEVE", "new-OUTDIAMETER": "50", "new-INDIAMETER": "60"})
    assert response.status_code == 400
    assert response.context["new_form"].errors["INDIAMETER"] == ["Must be smaller than the outer diameter (50 mm)."]


def test_a_new_item_with_a_part_type_the_model_never_saw_says_so_beside_its_prediction(client, planner, planner_api, trained_model):
    known = Item.objects.filter(item_cd__in=RoutingOperation.objects.values("item_cd")).order_by("item_cd").first()
    response = planner_api.post(
        "/api/v1/predictions/",
        {
            "item_codes": [known.item_cd],
            "items": [
                {"PART_TYPE": "ROTOR", "ITEM_MATERIAL": known.item_material, "OUTDIAMETER": 80},
                {"PART_TYPE": known.part_type, "ITEM_MATERIAL": known.item_material, "OUTDIAMETER": 80},
            ],
        },
        format="json",
    )
    results = response.json()["results"]
    assert [r["unseen_attributes"] for r in results] == [{}, {"PART_TYPE": "ROTOR"}, {}]

    # An item entered in the ERP after training, made of a material the model never learned, is flagged too.
    Item.objects.create(item_cd="ZZ-NEW-1", part_type=known.part_type, item_material="UNOBTAINIUM", outdiameter=50)
    client.force_login(planner)
    result_url = client.post("/predict/", {"form": "codes", "codes": f"{known.item_cd}\nZZ-NEW-1"})["Location"]
    html = client.get(result_url).content.decode()
    note = re.search(r'<p class="unseen" role="note">(.*?)</p>', html, re.S)
    assert note and "The model has never seen material <strong>UNOBTAINIUM</strong>" in note.group(1)
    assert html.count('class="unseen"') == 1
    assert re.search(r"ZZ-NEW-1</a></td><td>ok</td><td>[^<]*</td><td>\d+ % <b class=\"differs\"[^>]*>new to the model</b>", html)
