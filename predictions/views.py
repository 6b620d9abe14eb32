"""Planner pages: ask for predictions, read them, download them.

Flow: the form (`/predict/`) validates the input and keeps the *query* (codes, new items,
top_k, model version) in the session under a short id, then redirects to
`/predict/r/<id>/`. The result page runs the prediction and pins the model version that
answered into the stored query, so the CSV and JSON downloads (`/predict/r/<id>.csv`,
`.json`) re-run the very same query against the very same version: what you download is
what you saw. Predictions take milliseconds, so re-running is cheaper than keeping results;
the re-runs count under the `export` channel of the prediction metrics, so `page` counts each
query once. The last SESSION_QUERIES queries are kept (several tabs work side by side).

`/items/<code>/` shows one item of the ERP to planners (the admin is for staff): the result
page links the similar items and the predicted item's own routing there.
"""

from __future__ import annotations

import gzip
import secrets
from functools import lru_cache
from pathlib import Path

from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from erp.models import Item, WorkResult
from registry.models import ModelVersion
from routing_ml.csv_export import SafeDictWriter
from routing_ml.errors import RoutingMLError

from .forms import SUGGESTED_COLUMNS, ItemCodesForm, NewItemForm, suggestions
from .service import ERP_ROUTING_COLUMNS, PredictionBatch, current_routing, erp_routing_rows, predict_items

SESSION_KEY = "predictions"
SESSION_QUERIES = 10
# Items shown in full on the result page; the rest are in the summary table and the downloads.
DETAIL_LIMIT = 50
CHANNEL = "page"
# Downloads re-run the query the page showed: counted apart, so `channel="page"` counts each planner query once.
EXPORT_CHANNEL = "export"

predict_permission = permission_required("registry.predict", raise_exception=True)


def _store_query(request, query: dict) -> str:
    queries = request.session.get(SESSION_KEY, {})
    qid = secrets.token_urlsafe(6)
    queries[qid] = query
    while len(queries) > SESSION_QUERIES:
        queries.pop(next(iter(queries)))
    request.session[SESSION_KEY] = queries
    return qid


def _query(request, qid: str) -> dict:
    query = request.session.get(SESSION_KEY, {}).get(qid)
    if query is None:
        raise Http404("This prediction is no longer in your session. Ask again.")
    return query


def _run(request, qid: str, channel: str = CHANNEL) -> PredictionBatch:
    """Run the stored query; pin the version that answered so the downloads match the page."""
    query = _query(request, qid)
    batch = predict_items(
        item_codes=query["item_codes"], items=query["items"], top_k=query["top_k"], model_version=query["model_version"], channel=channel
    )
    if not query["model_version"]:
        query["model_version"] = batch.model_version
        request.session.modified = True
    return batch


@login_required
@predict_permission
@require_http_methods(["GET", "POST"])
def predict(request):
    """The input page: codes or a CSV file in one form, a new item's attributes in the other."""
    codes_form, new_form = ItemCodesForm(), NewItemForm()
    if request.method == "POST":
        if request.POST.get("form") == "new":
            new_form = NewItemForm(request.POST)
            if new_form.is_valid():
                data = new_form.cleaned_data
                return _redirect_to_result(request, [], [data["item"]], data)
        else:
            codes_form = ItemCodesForm(request.POST, request.FILES)
            if codes_form.is_valid():
                data = codes_form.cleaned_data
                return _redirect_to_result(request, data["item_codes"], data["items"], data, warnings=codes_form.csv_warnings)
    return render(
        request,
        "predictions/predict.html",
        {
            "codes_form": codes_form,
            "new_form": new_form,
            "suggestions": [(c, v) for c, v in suggestions().items() if c in SUGGESTED_COLUMNS],
            "active_version": ModelVersion.objects.get_active(),
        },
        status=400 if (codes_form.is_bound and codes_form.errors) or (new_form.is_bound and new_form.errors) else 200,
    )


def _redirect_to_result(request, codes, items, data, warnings=()):
    from django.contrib import messages

    for warning in warnings:
        messages.warning(request, warning)
    qid = _store_query(
        request,
        {
            "item_codes": codes,
            "items": items,
            "top_k": data.get("top_k"),
            "model_version": data.get("model_version") or None,
            "asked_at": timezone.now().isoformat(),
        },
    )
    return redirect("predictions:result", qid=qid)


def _item_url(code: str | None) -> str | None:
    """The planner's page of an item of the ERP (readable with registry.predict; the admin needs staff)."""
    return reverse("predictions:item", args=[code]) if code else None


def _item_admin_url(code: str) -> str | None:
    try:
        return reverse("admin:erp_item_change", args=[code])
    except NoReverseMatch:  # the item admin is not registered (e.g. a slim deployment)
        return None


def _chart_data(result) -> dict:
    ops = result.routing["operations"]
    labels = [f"{op['proc_seq']} {op['job_cd']}" for op in ops]

    def spread(value_key, low_key, high_key):
        plus = [max(0.0, (op[high_key] or 0) - (op[value_key] or 0)) if op[high_key] is not None else 0 for op in ops]
        minus = [max(0.0, (op[value_key] or 0) - (op[low_key] or 0)) if op[low_key] is not None else 0 for op in ops]
        return plus, minus

    run_plus, run_minus = spread("run_minutes_per_unit", "run_p10", "run_p90")
    setup_plus, setup_minus = spread("setup_minutes", "setup_p10", "setup_p90")
    return {
        "labels": labels,
        "setup": [op["setup_minutes"] for op in ops],
        "setup_plus": setup_plus,
        "setup_minus": setup_minus,
        "run": [op["run_minutes_per_unit"] for op in ops],
        "run_plus": run_plus,
        "run_minus": run_minus,
    }


def _display(batch: PredictionBatch) -> list[dict]:
    """What the template needs per item, beyond the result itself."""
    shown, new_count = [], 0
    for index, result in enumerate(batch.results):
        title = result.item_cd
        if not title:
            new_count += 1
            title = f"New item {new_count}"
        anchor = f"item-{index + 1}"
        entry = {
            "index": index + 1,
            "anchor": anchor,
            "chart_id": f"{anchor}-chart-data",
            "title": title,
            "result": result,
            "detail": index < DETAIL_LIMIT,
        }
        if result.ok:
            predicted = result.routing["signature"]
            entry["item_url"] = _item_url(result.item_cd) if result.source == "item_master" else None
            entry["confidence_pct"] = round(result.routing["confidence"] * 100)
            entry["similar"] = [
                {
                    **n,
                    "percent": round(max(0.0, n["similarity"] or 0) * 100),
                    "item_url": _item_url(n["item_cd"]),
                    "same": n["signature"] == predicted,
                }
                for n in result.similar_items
            ]
            entry["alternatives"] = [{**a, "percent": round(a["support"] * 100)} for a in result.alternatives]
            entry["chart"] = _chart_data(result) if entry["detail"] else None
            entry["total_setup"] = round(sum(op["setup_minutes"] or 0 for op in result.routing["operations"]), 2)
            entry["total_run"] = round(sum(op["run_minutes_per_unit"] or 0 for op in result.routing["operations"]), 4)
        shown.append(entry)
    return shown


@login_required
@predict_permission
@require_GET
def result(request, qid: str):
    query = _query(request, qid)
    try:
        batch = _run(request, qid)
    except RoutingMLError as exc:
        return render(request, "predictions/result.html", {"error": exc, "query": query, "qid": qid}, status=exc.http_status)
    active = ModelVersion.objects.get_active()
    return render(
        request,
        "predictions/result.html",
        {
            "batch": batch,
            "items": _display(batch),
            "query": query,
            "qid": qid,
            "is_active_version": active is not None and active.label == batch.model_version,
            "detail_limit": DETAIL_LIMIT,
            "hidden_count": max(0, len(batch.results) - DETAIL_LIMIT),
            "plotly_version": plotly_version(),
        },
    )


def _download_name(batch: PredictionBatch, extension: str) -> str:
    return f"predicted-routings-{batch.model_version}-{timezone.localtime():%Y%m%d-%H%M}.{extension}"


@login_required
@predict_permission
@require_GET
def download_csv(request, qid: str):
    """The predicted routings in BI_ROUTING_VIEW's layout (the ERP import format); formula-like text cells neutralised."""
    try:
        batch = _run(request, qid, EXPORT_CHANNEL)
    except RoutingMLError as exc:
        return HttpResponse(exc.message, status=exc.http_status, content_type="text/plain; charset=utf-8")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{_download_name(batch, "csv")}"'
    writer = SafeDictWriter(response, fieldnames=ERP_ROUTING_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(erp_routing_rows(batch))
    return response


@login_required
@predict_permission
@require_GET
def download_json(request, qid: str):
    """The full result, as the API returns it."""
    try:
        batch = _run(request, qid, EXPORT_CHANNEL)
    except RoutingMLError as exc:
        return JsonResponse({"error": exc.as_dict()}, status=exc.http_status)
    response = JsonResponse(batch.as_dict(), json_dumps_params={"ensure_ascii": False, "indent": 1})
    response["Content-Disposition"] = f'attachment; filename="{_download_name(batch, "json")}"'
    return response


# Work orders shown on an item's page, newest first: enough to see what the shop floor does now.
RECENT_WORK_RESULTS = 50


@login_required
@predict_permission
@require_GET
def item_detail(request, item_cd: str):
    """One item of the ERP, read-only, for planners: its master data, current routing and recent work orders.

    The evidence behind a prediction: the result page links each similar item (and the predicted
    item's own routing) here. Times are minutes; run time per unit, actual run minutes per unit
    being MACH_WORKED_HOURS × 60 / ORDER_QTY of each work order (`WorkResult.run_minutes_per_unit`).
    """
    item = Item.objects.filter(pk=item_cd).first()
    if item is None:
        return render(request, "predictions/item_not_found.html", {"item_cd": item_cd}, status=404)
    work_results = WorkResult.objects.filter(item_cd=item_cd)
    recent = list(work_results.order_by("-report_dt", "-id")[:RECENT_WORK_RESULTS])
    attributes = [
        (field.verbose_name, field.column, getattr(item, field.attname))
        for field in Item._meta.concrete_fields
        if field.column != "ITEM_CD"
    ]
    return render(
        request,
        "predictions/item.html",
        {
            "item": item,
            "attributes": attributes,
            "routing": current_routing(item_cd),
            "work_results": recent,
            "work_result_count": work_results.count() if len(recent) == RECENT_WORK_RESULTS else len(recent),
            "admin_url": _item_admin_url(item_cd) if request.user.is_staff else None,
        },
    )


@lru_cache(maxsize=1)
def _plotly_js() -> tuple[bytes, bytes]:
    """plotly.min.js from the installed plotly package (the machine may be offline: no CDN), plain and gzipped."""
    import plotly

    data = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()
    return data, gzip.compress(data, 6)


def plotly_version() -> str:
    import plotly

    return plotly.__version__


@require_GET
def plotly_js(request, version: str):
    """Served with the package version in the URL, so browsers may cache it for a year."""
    if version != plotly_version():
        raise Http404("Unknown plotly version.")
    plain, compressed = _plotly_js()
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        response = HttpResponse(compressed, content_type="text/javascript; charset=utf-8")
        response["Content-Encoding"] = "gzip"
    else:
        response = HttpResponse(plain, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    response["Vary"] = "Accept-Encoding"
    return response
