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

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods

from erp.codes import known_jobs, known_work_centres
from erp.labels import label
from erp.models import Item, WorkResult
from registry.models import ModelVersion
from routing_ml.csv_export import SafeDictWriter
from routing_ml.errors import RoutingMLError

from .forms import SUGGESTED_COLUMNS, ItemCodesForm, NewItemForm, suggestions
from .models import RoutingReview
from .reviews import predicted_routing, record_review, review_version
from .service import ERP_ROUTING_COLUMNS, PredictionBatch, current_routing, erp_routing_rows, predict_items

SESSION_KEY = "predictions"
SESSION_QUERIES = 10
# The result page shows every item in its summary table, and the full detail of one page of
# DETAIL_PAGE_SIZE items at a time, collapsed (<details>) unless the batch has at most
# OPEN_DETAILS_UP_TO items: a 1,000-item page stays small and usable at once.
DETAIL_PAGE_SIZE = 10
OPEN_DETAILS_UP_TO = 5
CHANNEL = "page"
# Downloads re-run the query the page showed: counted apart, so `channel="page"` counts each planner query once.
EXPORT_CHANNEL = "export"
# So do later showings of the same result (another page of details, a reload).
RESHOW_CHANNEL = "reshow"

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
        plus = [round(max(0.0, (op[high_key] or 0) - (op[value_key] or 0)), 4) if op[high_key] is not None else 0 for op in ops]
        minus = [round(max(0.0, (op[value_key] or 0) - (op[low_key] or 0)), 4) if op[low_key] is not None else 0 for op in ops]
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


def _latest_reviews(batch: PredictionBatch) -> dict:
    """item_cd → the current RoutingReview of each item of the ERP in the batch (one query)."""
    codes = list({r.item_cd for r in batch.results if r.item_cd and r.source == "item_master" and r.ok})
    if not codes:
        return {}
    return {r.item_cd: r for r in RoutingReview.objects.latest_per_item().filter(item_cd__in=codes).select_related("decided_by")}


def _display(batch: PredictionBatch, reviews: dict | None = None, page: int = 1) -> list[dict]:
    """What the template needs per item, beyond the result itself.

    Every item gets its summary row; only the items of detail page `page` (DETAIL_PAGE_SIZE per
    page) get what their full detail needs (similar items, chart data, forms).
    """
    reviews = reviews or {}
    first, last = (page - 1) * DETAIL_PAGE_SIZE, page * DETAIL_PAGE_SIZE
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
            "page": index // DETAIL_PAGE_SIZE + 1,
            "chart_id": f"{anchor}-chart-data",
            "title": title,
            "result": result,
            "detail": first <= index < last,
        }
        if result.ok:
            entry["confidence_pct"] = round(result.routing["confidence"] * 100)
            entry["unseen"] = [(label(column), value) for column, value in result.unseen_attributes.items()]
            entry["review"] = reviews.get(result.item_cd) if result.source == "item_master" else None
            entry["review_url"] = reverse("predictions:review", args=[result.item_cd]) if result.source == "item_master" else None
        if result.ok and entry["detail"]:
            predicted = result.routing["signature"]
            entry["item_url"] = _item_url(result.item_cd) if result.source == "item_master" else None
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
            entry["chart"] = _chart_data(result)
            entry["total_setup"] = round(sum(op["setup_minutes"] or 0 for op in result.routing["operations"]), 2)
            entry["total_run"] = round(sum(op["run_minutes_per_unit"] or 0 for op in result.routing["operations"]), 4)
        shown.append(entry)
    return shown


@login_required
@predict_permission
@require_GET
def result(request, qid: str):
    """Summary table of every item first; the full detail of one page of DETAIL_PAGE_SIZE items below, collapsed in big batches."""
    query = _query(request, qid)
    try:
        # The first showing counts (and is logged for planner agreement) as `page`; paging through
        # the details or reloading re-runs the same query and counts apart, like the downloads.
        batch = _run(request, qid, RESHOW_CHANNEL if query.get("shown") else CHANNEL)
    except RoutingMLError as exc:
        return render(request, "predictions/result.html", {"error": exc, "query": query, "qid": qid}, status=exc.http_status)
    active = ModelVersion.objects.get_active()
    pages = max(1, -(-len(batch.results) // DETAIL_PAGE_SIZE))
    try:
        page = min(pages, max(1, int(request.GET.get("page", 1))))
    except ValueError:
        page = 1
    if not query.get("shown"):
        query["shown"] = True
        request.session.modified = True
    items = _display(batch, _latest_reviews(batch), page)
    return render(
        request,
        "predictions/result.html",
        {
            "batch": batch,
            "items": items,
            "details": [it for it in items if it["detail"]],
            "failed": [it for it in items if not it["result"].ok],
            "open_details": len(batch.results) <= OPEN_DETAILS_UP_TO,
            "can_review": request.user.has_perm("predictions.add_routingreview"),
            "query": query,
            "qid": qid,
            "is_active_version": active is not None and active.label == batch.model_version,
            "page": page,
            "pages": range(1, pages + 1) if pages > 1 else None,
            "page_size": DETAIL_PAGE_SIZE,
            "plotly_version": plotly_version(),
        },
    )


def _download_name(batch: PredictionBatch, extension: str) -> str:
    return f"predicted-routings-{batch.model_version}-{timezone.localtime():%Y%m%d-%H%M}.{extension}"


@login_required
@predict_permission
@require_GET
def download_csv(request, qid: str):
    """The predicted routings in BI_ROUTING_VIEW's layout (the ERP import format), then the items that failed and why;
    formula-like text cells neutralised."""
    try:
        batch = _run(request, qid, EXPORT_CHANNEL)
    except RoutingMLError as exc:
        return HttpResponse(exc.message, status=exc.http_status, content_type="text/plain; charset=utf-8")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{_download_name(batch, "csv")}"'
    # Items that could not be predicted are listed too, after the routings, with the reason in a last
    # column ERROR (only present when some item failed; ERP imports ignore unknown columns).
    failed = [r for r in batch.results if not r.ok]
    writer = SafeDictWriter(response, fieldnames=[*ERP_ROUTING_COLUMNS, *(["ERROR"] if failed else [])], lineterminator="\n")
    writer.writeheader()
    writer.writerows(erp_routing_rows(batch))
    writer.writerows({"ITEM_CD": r.item_cd or "", "ERROR": r.error["message"]} for r in failed)
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
            "review": RoutingReview.objects.filter(item_cd=item_cd).select_related("decided_by").first(),
            "can_review": request.user.has_perm("predictions.add_routingreview"),
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


# --------------------------------------------------------------------------------------------
# Planners' reviews
# --------------------------------------------------------------------------------------------

review_permission = permission_required("predictions.add_routingreview", raise_exception=True)
# Empty operation rows offered below the predicted ones when the page works without JavaScript.
SPARE_OPERATION_ROWS = 2
OPERATION_FIELDS = ("job_cd", "res_cd", "inside_flag", "setup_minutes", "run_minutes_per_unit")
# Reviews and awaiting items listed on a planner's review page.
REVIEW_PAGE_ROWS = 200


def _operation_rows(post) -> tuple[list[dict], list[int]]:
    """The edited operations of a review form, in the order the planner gave, and each one's row number.

    Rows are `op-<n>-<field>`; a row whose `remove` box is ticked, or that is entirely empty, is
    left out; `op-<n>-order` (a number) orders the rest (the JavaScript keeps it in step with the
    rows' order on screen; without it, the planner types the numbers).
    """
    numbers = sorted({int(key.split("-")[1]) for key in post if key.startswith("op-") and key.split("-")[1].isdigit()})
    rows = []
    for n in numbers:
        values = {name: post.get(f"op-{n}-{name}", "").strip() for name in OPERATION_FIELDS}
        if post.get(f"op-{n}-remove") or not any(values.values()):
            continue
        try:
            order = float(post.get(f"op-{n}-order", "") or n)
        except ValueError:
            order = float(n)
        rows.append((order, n, values))
    rows.sort(key=lambda row: (row[0], row[1]))
    return [values for _, _, values in rows], [n for _, n, _ in rows]


def _safe_next(request, fallback: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return fallback


def _review_context(request, item: Item, version, *, edit_rows=None, errors=None, comment="") -> dict:
    predicted = predicted_routing(item.item_cd, version)
    if edit_rows is None:
        edit_rows = [
            {
                "n": index + 1,
                "order": 10 * (index + 1),
                "job_cd": op["job_cd"],
                "res_cd": op["res_cd"] or "",
                "inside_flag": op["inside_flag"] or "",
                "setup_minutes": "" if op["setup_minutes"] is None else op["setup_minutes"],
                "run_minutes_per_unit": "" if op["run_minutes_per_unit"] is None else op["run_minutes_per_unit"],
                "errors": {},
            }
            for index, op in enumerate(predicted["operations"])
        ]
        start = len(edit_rows)
        edit_rows += [
            {"n": start + i + 1, "order": 10 * (start + i + 1), "spare": True, "errors": {}, **dict.fromkeys(OPERATION_FIELDS, "")}
            for i in range(SPARE_OPERATION_ROWS)
        ]
    history = list(RoutingReview.objects.filter(item_cd=item.item_cd).select_related("model_version", "decided_by")[:20])
    return {
        "item": item,
        "version": version,
        "predicted": predicted,
        "confidence_pct": round(predicted["confidence"] * 100),
        "existing": current_routing(item.item_cd),
        "edit_rows": edit_rows,
        "errors": errors or {},
        "comment": comment,
        "history": history,
        "current": history[0] if history else None,
        "jobs": known_jobs(),
        "work_centres": known_work_centres(),
        "next": _safe_next(request, ""),
    }


@login_required
@review_permission
@require_http_methods(["GET", "POST"])
def review(request, item_cd: str):
    """Accept, edit or reject the routing a version predicts for one item, with a comment.

    GET shows the prediction of `?version=` (default: the active one), the current ERP routing,
    the item's review history and the forms. POST records the decision (`RoutingReview.record`
    validates it) and returns to `next` (the result page or the item page), or shows the form
    again with each error beside its field.
    """
    item = Item.objects.filter(pk=item_cd).first()
    if item is None:
        return render(request, "predictions/item_not_found.html", {"item_cd": item_cd}, status=404)
    label = request.POST.get("version") or request.GET.get("version") or None
    try:
        version = review_version(label)
    except RoutingMLError as exc:
        return render(request, "predictions/review.html", {"item": item, "fatal": exc}, status=exc.http_status)

    if request.method == "POST":
        decision = request.POST.get("decision", "")
        comment = request.POST.get("comment", "")
        operations, row_numbers = _operation_rows(request.POST) if decision == "edited" else ([], [])
        try:
            saved = record_review(
                item_cd=item.item_cd,
                decision=decision,
                operations=operations,
                comment=comment,
                model_version=version.label,
                by=request.user,
            )
        except ValidationError as exc:
            errors = exc.message_dict
            rows_by_number = {n: {**operations[i], "errors": {}} for i, n in enumerate(row_numbers)}
            for key, messages_ in errors.items():
                parts = key.split(".")
                if parts[0] == "operations" and len(parts) == 3 and int(parts[1]) < len(row_numbers):
                    rows_by_number[row_numbers[int(parts[1])]]["errors"][parts[2]] = " ".join(messages_)
            edit_rows = None
            if decision == "edited":
                edit_rows = [{"n": pos + 1, "order": 10 * (pos + 1), **rows_by_number[n]} for pos, n in enumerate(row_numbers)] or None
            context = _review_context(request, item, version, edit_rows=edit_rows, errors=errors, comment=comment)
            return render(request, "predictions/review.html", context, status=400)
        messages.success(request, f"{item.item_cd}: routing {saved.get_decision_display()}.")
        return redirect(_safe_next(request, reverse("predictions:review", args=[item.item_cd]) + f"?version={version.label}"))

    return render(request, "predictions/review.html", _review_context(request, item, version))


def _awaiting_review(request) -> list[dict]:
    """Items of the planner's recent queries (this session) that no one has reviewed since they were asked."""
    asked: dict[str, tuple] = {}
    for qid, query in reversed(list(request.session.get(SESSION_KEY, {}).items())):
        when = parse_datetime(query.get("asked_at") or "")
        for code in query.get("item_codes") or []:
            asked.setdefault(code, (qid, when))
    if not asked:
        return []
    reviewed = dict(RoutingReview.objects.latest_per_item().filter(item_cd__in=list(asked)).values_list("item_cd", "decided_at"))
    known = set(Item.objects.filter(pk__in=list(asked)).values_list("pk", flat=True))
    rows = []
    for code, (qid, when) in asked.items():
        if code not in known or (code in reviewed and (when is None or reviewed[code] >= when)):
            continue
        rows.append({"item_cd": code, "asked_at": when, "result_url": reverse("predictions:result", args=[qid])})
    return rows[:REVIEW_PAGE_ROWS]


@login_required
@review_permission
@require_GET
def my_reviews(request):
    """A planner's reviews (newest first) and the items of their recent queries still awaiting one."""
    mine = RoutingReview.objects.by(request.user).select_related("model_version")
    current_ids = set(RoutingReview.objects.latest_per_item().filter(decided_by=request.user).values_list("pk", flat=True))
    reviews = list(mine[:REVIEW_PAGE_ROWS])
    for r in reviews:
        r.is_current = r.pk in current_ids
    return render(
        request,
        "predictions/reviews.html",
        {"reviews": reviews, "review_count": mine.count(), "awaiting": _awaiting_review(request), "page_rows": REVIEW_PAGE_ROWS},
    )
