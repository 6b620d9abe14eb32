"""The one prediction service behind the planner pages, the REST API and the quality evaluator.

`predict_items(item_codes=[...])` predicts items of the ERP item master;
`predict_items(items=[{column: value}])` predicts new items described by their attributes
(ERP column names, any subset). Both may be mixed in one call; results come back in input
order (codes first, then new items), one per input, each `ok` or `error` on its own: one
unknown code never fails the batch.

A call costs a fixed number of queries whatever the batch size: one for the items, one for
their current routings and one for the attributes of every neighbour shown (each may be
split only when the database limits the number of query parameters, e.g. 2,100 on SQL
Server). They are raw SQL on the ERP alias, read as tuples: on the hot path the ORM's
compile and row building cost more than the queries. The model itself answers from memory
(`registry.loader`); an item it was trained on is given to it by code, so it reuses the
embedding it stored for that item, and items added to the ERP since training are described
by their attributes.

Exclude-self: an item is never its own evidence. The engine drops the item's own row from
its neighbours, so a known item's prediction comes from *other* items and can be compared
honestly with its current routing (`existing_routing`), which is only shown, never used.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd
from django.conf import settings
from django.db import connections, models, router, transaction

from erp.models import Item
from registry.loader import loader
from routing_ml.errors import ErrorCode, RoutingMLError
from training.engine.encoding import SMALL_FRAME
from training.engine.numbers import json_numbers

from . import metrics

logger = logging.getLogger(__name__)

# Item master columns by their ERP names (Item's db_column), in model order.
ITEM_COLUMNS: dict[str, models.Field] = {f.column: f for f in Item._meta.concrete_fields}
NUMERIC_COLUMNS: frozenset[str] = frozenset(c for c, f in ITEM_COLUMNS.items() if isinstance(f, models.FloatField))
# Sizes are physical lengths: a negative value is a typo, not a measurement.
NON_NEGATIVE_COLUMNS: frozenset[str] = frozenset(
    {"OUTDIAMETER", "INDIAMETER", "OUTTHICKNESS", "IN_SEALSIZE", "MID_SEALSIZE", "OUT_SEALSIZE"}
)
# The largest size (mm) a part of a mechanical seal can have; anything bigger is a typo (or an attack).
MAX_SIZE_MM = 10_000.0
# Physical bounds of each numeric attribute: (lowest, highest, lowest allowed?). Sizes are lengths
# (> 0 mm, at most MAX_SIZE_MM); the rotation flags are 0 or 1.
NUMERIC_BOUNDS: dict[str, tuple[float, float, bool]] = {
    **{c: (0.0, MAX_SIZE_MM, False) for c in NON_NEGATIVE_COLUMNS},
    "ROTATE_CLOCKWISE": (0.0, 1.0, True),
    "ROTATE_CTRCLOCKWISE": (0.0, 1.0, True),
}
ATTRIBUTE_COLUMNS: tuple[str, ...] = tuple(c for c in ITEM_COLUMNS if c not in ("ITEM_CD", "INSRT_DT"))
_BY_LOWER_NAME = {c.lower(): c for c in ITEM_COLUMNS}
# What a planner needs to compare items at a glance: shown for each neighbour, and (with the name)
# for each predicted item. Kept short: a 1,000-item batch carries some 20,000 neighbours.
NEIGHBOUR_ATTRIBUTES: tuple[str, ...] = ("PART_TYPE", "ITEM_MATERIAL", "OUTDIAMETER", "INDIAMETER", "OUTTHICKNESS", "SealTypeGrup")
KEY_ATTRIBUTES: tuple[str, ...] = ("ITEM_NM", *NEIGHBOUR_ATTRIBUTES)

OK = "ok"
ERROR = "error"


class PredictionInputError(RoutingMLError):
    """The request as a whole cannot be predicted (nothing to predict, bad attributes). HTTP 400."""

    code = 400
    http_status = 400


class BatchTooLarge(PredictionInputError):
    """More items than PREDICTION_BATCH_LIMIT in one call. HTTP 400."""


# --------------------------------------------------------------------------------------------
# Input cleaning
# --------------------------------------------------------------------------------------------


def clean_item_codes(codes: Iterable[Any]) -> list[str]:
    """Codes as strings without surrounding blanks; empty entries dropped. Order and duplicates are kept."""
    cleaned = []
    for code in codes:
        if code is None:
            continue
        text = str(code).strip()
        if text:
            cleaned.append(text)
    return cleaned


def clean_item_attributes(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate one new item's attributes → `(clean, errors)`; `errors` maps a column to what is wrong with it.

    Column names are the ERP's (`PART_TYPE`, `OUTDIAMETER`, `SealTypeGrup`…), matched without
    regard to case. Empty values mean "not known" and are left out; numbers must be finite and
    inside NUMERIC_BOUNDS (sizes positive, at most MAX_SIZE_MM); text holds no NUL character; an
    item must be described by at least one attribute besides ITEM_CD.
    """
    clean: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, value in raw.items():
        column = _BY_LOWER_NAME.get(str(key).strip().lower())
        if column is None:
            errors[str(key)] = f"unknown column {key!r}; use the item master's column names, e.g. PART_TYPE, ITEM_MATERIAL, OUTDIAMETER."
            continue
        if value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, float) and math.isnan(value)):
            continue
        if column in NUMERIC_COLUMNS:
            if isinstance(value, bool):
                errors[column] = "must be a number."
                continue
            try:
                number = float(str(value).strip()) if isinstance(value, str) else float(value)
            except OverflowError:  # an integer with hundreds of digits
                number = math.inf
            except (TypeError, ValueError):
                errors[column] = f"must be a number, not {_shorten(value)}."
                continue
            low, high, low_allowed = NUMERIC_BOUNDS.get(column, (-math.inf, math.inf, True))
            if not math.isfinite(number):
                errors[column] = "must be a finite number." if high == math.inf else f"must be a number of at most {high:g}."
            elif number < 0 and column in NON_NEGATIVE_COLUMNS:
                errors[column] = "must not be negative."
            elif number < low or (number == low and not low_allowed):
                errors[column] = f"must be more than {low:g}." if not low_allowed else f"must be at least {low:g}."
            elif number > high:
                errors[column] = f"must be at most {high:g}" + (" mm." if column in NON_NEGATIVE_COLUMNS else ".")
            else:
                clean[column] = number
            continue
        if isinstance(value, dict | list):
            errors[column] = "must be a single value."
            continue
        text = str(value).strip()
        max_length = ITEM_COLUMNS[column].max_length
        if "\x00" in text:
            errors[column] = "must not contain a NUL character."
        elif max_length and len(text) > max_length:
            errors[column] = f"is longer than {max_length} characters."
        else:
            clean[column] = text
    outer, inner = clean.get("OUTDIAMETER"), clean.get("INDIAMETER")
    if outer is not None and inner is not None and inner >= outer and "INDIAMETER" not in errors:
        errors["INDIAMETER"] = f"must be smaller than the outer diameter ({outer:g} mm)."
    if not errors and not any(c in clean for c in ATTRIBUTE_COLUMNS):
        errors["__all__"] = "describe the item by at least one attribute (e.g. PART_TYPE, ITEM_MATERIAL, OUTDIAMETER)."
    return clean, errors


def _shorten(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class ItemPrediction:
    """The answer for one input: a predicted routing (`status == "ok"`) or an error for that item only."""

    item_cd: str | None
    status: str
    model_version: str
    source: str  # "item_master" (a code of the ERP) or "attributes" (a new item described by the caller)
    attributes: dict[str, Any] = field(default_factory=dict)
    routing: dict[str, Any] | None = None
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    similar_items: list[dict[str, Any]] = field(default_factory=list)
    existing_routing: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    # Attribute values (column → value) the model never learned, for an item it describes by its attributes.
    unseen_attributes: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def matches_existing(self) -> bool | None:
        """Whether the predicted job sequence equals the current ERP routing (None when either is missing)."""
        if not self.routing or not self.existing_routing:
            return None
        return list(self.routing["signature"]) == list(self.existing_routing["signature"])

    def as_dict(self) -> dict[str, Any]:
        data = {
            "item_cd": self.item_cd,
            "status": self.status,
            "model_version": self.model_version,
            "source": self.source,
            "attributes": self.attributes,
        }
        if self.ok:
            data.update(
                routing=self.routing,
                alternatives=self.alternatives,
                similar_items=self.similar_items,
                existing_routing=self.existing_routing,
                unseen_attributes=self.unseen_attributes,
            )
        else:
            data["error"] = self.error
        return data


@dataclass
class PredictionBatch:
    """All results of one call, in input order, and which model version answered."""

    model_version: str
    results: list[ItemPrediction]
    duration: float
    top_k: int | None = None

    @property
    def ok_count(self) -> int:
        return sum(1 for r in self.results if r.ok)

    @property
    def error_count(self) -> int:
        return len(self.results) - self.ok_count

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "count": len(self.results),
            "ok": self.ok_count,
            "errors": self.error_count,
            "duration_ms": round(self.duration * 1000, 2),
            "results": [r.as_dict() for r in self.results],
        }


# --------------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------------


def resolve_model(model_version: str | None = None):
    """(label, model) for `model_version`, or for the active version when None.

    Unknown label → ModelNotFound (404, code 1002); no active version → NoActiveModel (503, code 1002).
    """
    if model_version:
        return loader.get(model_version)
    return loader.active()


def predict_items(
    item_codes: Sequence[Any] | None = None,
    items: Sequence[Mapping[str, Any]] | None = None,
    *,
    top_k: int | None = None,
    model_version: str | None = None,
    exclude_self: bool = True,
    include_context: bool = True,
    channel: str = "internal",
    log: bool = True,
) -> PredictionBatch:
    """Predict the routing of items of the item master (`item_codes`) and/or new items (`items`).

    `top_k`: neighbours to consult (None = the model's default). `model_version`: a ready version's
    label (None = the active one). `exclude_self`: an item never counts as its own neighbour (keep it
    True except to debug the model). `include_context=False` skips the current-routing and
    neighbour-attribute queries for callers that only need the prediction (e.g. a quality cycle).
    `channel` labels the Prometheus figures (api, page, quality, internal). `log=False` leaves the
    prediction log (PREDICTION_LOG_CHANNELS) to the caller, e.g. to write it once the answer is sent.

    Raises PredictionInputError/BatchTooLarge (400), ModelNotFound (404) or NoActiveModel (503)
    for the call as a whole; everything about one item is reported in that item's result.
    """
    started = time.perf_counter()
    # A batch builds some 100,000 small dicts and lists that all live until the answer is sent: the cyclic
    # GC would run over and over while they are built (and over the whole heap) without freeing anything.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        batch = _predict(
            item_codes, items, top_k=top_k, model_version=model_version, exclude_self=exclude_self, include_context=include_context
        )
    except RoutingMLError:
        metrics.record_rejected(channel)
        raise
    finally:
        if gc_was_enabled:
            gc.enable()
    batch.duration = time.perf_counter() - started
    metrics.record_batch(batch, channel)
    if log and channel in settings.PREDICTION_LOG_CHANNELS:
        log_served(batch, channel)
    return batch


# --------------------------------------------------------------------------------------------
# The log of served predictions (planner agreement)
# --------------------------------------------------------------------------------------------


def log_served(batch: PredictionBatch, channel: str) -> int:
    """Log each successful prediction of an item with a code (`PredictionLog`) in one statement; returns the rows written.

    Rows are put together from the answer's plain values (codes and signatures are text, the
    confidence a float already), not through each field's conversion, which cost a 1,000-item
    request a third of its logging. SQLite gets one prepared INSERT run for every row (`executemany`, its fastest bulk
    insert) and the times as JSON text from orjson; other databases one multi-row INSERT (split
    only past their parameter limit) with the JSON field's own adaptation. Not `bulk_create`, whose
    batches are capped at Django's 999 parameters on SQLite. A failure to log is reported and
    swallowed: the planner still gets the prediction.
    """
    from django.utils import timezone

    from .models import PredictionLog

    results = [r for r in batch.results if r.ok and r.item_cd]
    if not results:
        return 0
    try:
        fields = [
            PredictionLog._meta.get_field(name)
            for name in ("item_cd", "model_version", "signature", "times", "confidence", "channel", "served_at")
        ]
        alias = router.db_for_write(PredictionLog) or "default"
        connection = connections[alias]
        times_field, served_at = fields[3], fields[6]
        sqlite = connection.vendor == "sqlite"
        # Prepared once: the time-zone conversion of `served_at` per row also left ~70 small blocks alive per
        # 1,000 rows (tracemalloc), pinning pymalloc arenas in a web worker.
        when = served_at.get_db_prep_save(timezone.now(), connection)
        separator = PredictionLog.SEPARATOR
        rows = []
        for r in results:
            pairs = [[op.get("setup_minutes"), op.get("run_minutes_per_unit")] for op in r.routing["operations"]]
            confidence = r.routing.get("confidence")
            rows.append(
                (
                    str(r.item_cd),
                    batch.model_version,
                    separator.join(str(job) for job in r.routing["signature"])[:1000],
                    orjson.dumps(pairs, option=orjson.OPT_SERIALIZE_NUMPY).decode()
                    if sqlite
                    else times_field.get_db_prep_save(pairs, connection),
                    None if confidence is None else float(confidence),
                    channel,
                    when,
                )
            )
        qn = connection.ops.quote_name
        insert = f"INSERT INTO {qn(PredictionLog._meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) VALUES "
        placeholder = "(" + ", ".join(["%s"] * len(fields)) + ")"
        # A savepoint: should the insert fail inside a caller's transaction, that transaction stays usable.
        with transaction.atomic(using=alias), connection.cursor() as cursor:
            if sqlite:
                cursor.executemany(insert + placeholder, rows)
            else:
                per_query = max(1, _param_limit(alias) // len(fields))
                for start in range(0, len(rows), per_query):
                    chunk = rows[start : start + per_query]
                    cursor.execute(insert + ", ".join([placeholder] * len(chunk)), [value for row in chunk for value in row])
        return len(rows)
    except Exception:
        logger.exception("Could not log %d served predictions", len(results))
        return 0


def _predict(item_codes, items, *, top_k, model_version, exclude_self, include_context) -> PredictionBatch:
    codes = clean_item_codes(item_codes or [])
    described: list[tuple[dict, dict]] = []
    for index, raw in enumerate(items or []):
        if not isinstance(raw, Mapping):
            raise PredictionInputError(
                "Each new item must be an object of column: value.", details={"items": {str(index): "not an object"}}
            )
        described.append(clean_item_attributes(raw))
    requested = len(codes) + len(described)
    limit = settings.PREDICTION_BATCH_LIMIT
    if requested > limit:
        raise BatchTooLarge(
            f"At most {limit} items per request; this one has {requested}. Split it into several requests.",
            details={"limit": limit, "requested": requested},
        )
    if requested == 0:
        raise PredictionInputError("Nothing to predict: give item codes or the attributes of new items.")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 50):
        raise PredictionInputError("top_k must be a whole number between 1 and 50.", details={"top_k": top_k})

    label, model = resolve_model(model_version)

    # Query 1: the item master rows of the codes, in bulk.
    unique_codes = list(dict.fromkeys(codes))
    master = _fetch_items(unique_codes) if unique_codes else {}
    found_codes = [c for c in unique_codes if c in master]

    # One frame for the engine: the found items (each once), then the validly described new items.
    # An item the model was trained on is given by its code alone, so the engine uses the embedding it
    # stored for it (the attributes it learned from) and skips encoding; an item added to the ERP since
    # training is described by its attributes. A new item keeps the ITEM_CD it was given, if any (so
    # exclude-self still applies to it). Engine rows are matched back by position, never by code.
    new_items = [clean for clean, errors in described if not errors]
    known = dict(zip(found_codes, model.has_items(found_codes).tolist(), strict=True))  # one vectorised look-up
    records = [{"ITEM_CD": c} if known[c] else master[c] for c in found_codes]
    records += [{**item, "ITEM_CD": item.get("ITEM_CD")} for item in new_items]
    raw_rows = _run_engine(model, _engine_frame(records), top_k=top_k, exclude_self=exclude_self) if records else []
    raw = dict(zip(found_codes, raw_rows[: len(found_codes)], strict=True))
    raw_new = iter(raw_rows[len(found_codes) :])

    # Query 2: the current ERP routings of every input that has a code (shown, never used as evidence).
    existing: dict[str, dict] = {}
    if include_context:
        with_codes = list(dict.fromkeys(found_codes + [item["ITEM_CD"] for item in new_items if item.get("ITEM_CD")]))
        existing = _current_routings(with_codes) if with_codes else {}

    # Query 3: key attributes of every neighbour shown.
    neighbour_attrs: dict[str, dict] = {}
    if include_context:
        neighbour_codes = {str(n["item_cd"]) for r in raw_rows if isinstance(r, dict) for n in r.get("similar_items") or []}
        neighbour_attrs = _key_attributes(neighbour_codes) if neighbour_codes else {}

    vocabularies = _vocabularies(model)
    unseen = {c: _unseen(master[c], vocabularies) for c in found_codes if not known[c]}

    results: list[ItemPrediction] = []
    for code in codes:
        if code not in master:
            results.append(
                ItemPrediction(
                    item_cd=code,
                    status=ERROR,
                    model_version=label,
                    source="item_master",
                    error={
                        "code": int(ErrorCode.MODEL_NOT_FOUND),
                        "message": f"item {code} not found in the item master",
                        "details": {"item_cd": code},
                    },
                )
            )
            continue
        attributes = {k: master[code].get(k) for k in KEY_ATTRIBUTES}
        results.append(_result(code, "item_master", attributes, raw[code], label, existing.get(code), neighbour_attrs))
        results[-1].unseen_attributes = unseen.get(code, {})
    for item, errors in described:
        code = item.get("ITEM_CD")
        attributes = {k: v for k, v in item.items() if k != "ITEM_CD"}
        if errors:
            results.append(
                ItemPrediction(
                    item_cd=code,
                    status=ERROR,
                    model_version=label,
                    source="attributes",
                    attributes=attributes,
                    error={
                        "code": 400,
                        "message": "the item's attributes are invalid: "
                        + "; ".join(f"{k}: {v}" if k != "__all__" else v for k, v in errors.items()),
                        "details": errors,
                    },
                )
            )
            continue
        results.append(_result(code, "attributes", attributes, next(raw_new), label, existing.get(code) if code else None, neighbour_attrs))
        results[-1].unseen_attributes = _unseen(item, vocabularies)
    return PredictionBatch(model_version=label, results=results, duration=0.0, top_k=top_k)


_VOCABULARIES: dict[int, tuple[Any, dict[str, frozenset[str]]]] = {}


def _vocabularies(model) -> dict[str, frozenset[str]]:
    """{column: the values the model's encoder learned} of each categorical feature, read once per loaded model.

    Read from the encoder's blocks (`spec.name`, `categories`) without changing the engine; a
    value outside them is encoded as "other", i.e. the model matches the item on its other
    attributes only.
    """
    cached = _VOCABULARIES.get(id(model))
    if cached is not None and cached[0] is model:
        return cached[1]
    vocabularies = {}
    for block in getattr(getattr(model, "encoder", None), "blocks", None) or []:
        categories = getattr(block, "categories", None)
        if categories is not None:
            vocabularies[block.spec.name] = frozenset(str(c) for c in categories)
    _VOCABULARIES.clear()  # one model serves at a time, two while a new version warms up: keep only the latest
    _VOCABULARIES[id(model)] = (model, vocabularies)
    return vocabularies


def _unseen(record: Mapping[str, Any], vocabularies: Mapping[str, frozenset[str]]) -> dict[str, str]:
    """The categorical values of `record` the model never learned (empty values are "unknown", not unseen)."""
    unseen = {}
    for column, known in vocabularies.items():
        value = record.get(column)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        text = str(value).strip()
        if text and text not in known:
            unseen[column] = text
    return unseen


def _engine_frame(records: list[dict]) -> pd.DataFrame | dict[str, list]:
    """The engine's input: one row per record; numbers as float, a row needing encoding sees every item column.

    Built column by column (`from_records` cost more than the model for a one-item request). Every
    value is a cleaned attribute or an item master value, so a number is a float or None already.
    A few items given by code alone go as the engine's own small input, `{"ITEM_CD": [codes]}`: what
    it turns a frame of up to SMALL_FRAME rows into first, without building the frame (~0.2 ms).
    """
    if all(len(record) == 1 and "ITEM_CD" in record for record in records):
        codes = [record["ITEM_CD"] for record in records]
        return {"ITEM_CD": codes} if len(codes) <= SMALL_FRAME else pd.DataFrame({"ITEM_CD": codes})
    # Some rows are described by attributes: absent columns are missing values.
    columns = {}
    for column in _FETCH_COLUMNS:
        values = [record.get(column) for record in records]
        columns[column] = np.array(values, dtype="float64") if column in NUMERIC_COLUMNS else values
    return pd.DataFrame(columns)


def _engine_rows(frame: pd.DataFrame | dict[str, list]) -> int:
    return len(frame["ITEM_CD"]) if isinstance(frame, dict) else len(frame)


def _engine_row(frame: pd.DataFrame | dict[str, list], position: int) -> pd.DataFrame | dict[str, list]:
    """Row `position` of an engine input, as an input of one row."""
    if isinstance(frame, dict):
        return {column: values[position : position + 1] for column, values in frame.items()}
    return frame.iloc[[position]]


def _run_engine(model, frame: pd.DataFrame | dict[str, list], *, top_k, exclude_self) -> list[dict | Exception]:
    """Engine output per input row, its numbers rounded for the answer (ANSWER_DECIMALS).

    If the batch call fails, rows are retried one by one so only the culprit fails.
    """
    rows = _engine_rows(frame)
    try:
        out = list(model.predict(frame, top_k=top_k, exclude_self=exclude_self, decimals=ANSWER_DECIMALS))
        if len(out) != rows:
            raise RuntimeError(f"the model returned {len(out)} results for {rows} items")
        return out
    except Exception as exc:
        if rows == 1:
            logger.exception("Prediction failed for %s", frame["ITEM_CD"][0] if isinstance(frame, dict) else frame["ITEM_CD"].iloc[0])
            return [exc]
        logger.warning("Batch prediction failed (%s); retrying item by item", exc)
    results: list[dict | Exception] = []
    for position in range(rows):
        one = _engine_row(frame, position)
        try:
            results.append(model.predict(one, top_k=top_k, exclude_self=exclude_self, decimals=ANSWER_DECIMALS)[0])
        except Exception as exc:
            logger.exception("Prediction failed for %s", one["ITEM_CD"][0] if isinstance(one, dict) else one["ITEM_CD"].iloc[0])
            results.append(exc)
    return results


def _result(item_cd, source, attributes, raw, label, existing, neighbour_attrs) -> ItemPrediction:
    if isinstance(raw, Exception):
        return ItemPrediction(
            item_cd=item_cd,
            status=ERROR,
            model_version=label,
            source=source,
            attributes=attributes,
            error={"code": 500, "message": f"the model could not predict this item: {type(raw).__name__}: {raw}", "details": None},
        )
    # The engine's records are plain Python (JSON-ready), fresh per call, and their minutes and
    # similarities already rounded (_run_engine): completed in place, not copied.
    operations = raw.get("operations") or []
    routing = {"signature": raw.get("signature") or [], "confidence": _clip01(raw.get("confidence")), "operations": operations}
    alternatives = raw.get("alternatives") or []
    for alt in alternatives:
        alt["support"] = _clip01(alt.get("support"))
    similar = raw.get("similar_items") or []
    no_attributes: dict = {}
    for neighbour in similar:
        neighbour["attributes"] = neighbour_attrs.get(neighbour["item_cd"], no_attributes)
    return ItemPrediction(
        item_cd=item_cd,
        status=OK,
        model_version=label,
        source=source,
        attributes=attributes,
        routing=routing,
        alternatives=alternatives,
        similar_items=similar,
        existing_routing=existing,
    )


# Minutes, similarities and shares in an answer: 4 decimals (0.0001 minute is 6 ms).
ANSWER_DECIMALS = 4


def _round4(value) -> float | None:
    """A finite float rounded to 4 decimals, or None (NaN, inf and None alike)."""
    if value is None:
        return None
    value = float(value)
    return round(value, ANSWER_DECIMALS) if math.isfinite(value) else None


def _clip01(value) -> float:
    number = _round4(value) or 0.0
    return min(1.0, max(0.0, number))


# --------------------------------------------------------------------------------------------
# Bulk reads
# --------------------------------------------------------------------------------------------


def _param_limit(alias: str) -> int:
    """How many parameters one query may carry on this database (SQLite: its compiled limit, not Django's 999)."""
    connection = connections[alias]
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        try:
            return max(900, connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) - 10)
        except AttributeError:  # Python < 3.11
            return 900
    if connection.vendor == "microsoft":
        return 2000
    return 30000


def _chunks(values: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _select_by_codes(
    model: type[models.Model], columns: Sequence[str], codes: Sequence[str], where: str = "", params: Sequence = ()
) -> list[tuple]:
    """`SELECT columns FROM <ERP table> WHERE ITEM_CD IN (codes) [AND where]` as tuples, on the ERP alias.

    Raw SQL on purpose: these are the per-request reads of the hot path, and the ORM's compile and
    row-building cost more than the queries themselves. One statement unless the codes exceed the
    database's parameter limit. On SQLite the codes travel as one JSON array (`json_each`, still an
    index search per code): one statement text whatever the count, where thousands of placeholders
    made a new statement per batch size, each compiled anew and kept in the connection's
    statement cache (up to 128 of them).
    """
    qn = connections[router.db_for_read(model) or "default"].ops.quote_name
    return _query_by_codes(model, ", ".join(qn(c) for c in columns), codes, where, params)


def _query_by_codes(
    model: type[models.Model], select_list: str, codes: Sequence[str], where: str = "", params: Sequence = (), group_by: str = ""
) -> list[tuple]:
    """`_select_by_codes` with a raw select list (expressions, aggregates) and an optional GROUP BY; the same batching."""
    alias = router.db_for_read(model) or "default"
    connection = connections[alias]
    qn = connection.ops.quote_name
    select = f"SELECT {select_list} FROM {qn(model._meta.db_table)} WHERE {qn('ITEM_CD')} IN "
    extra = (f" AND ({where})" if where else "") + (f" GROUP BY {group_by}" if group_by else "")
    rows: list[tuple] = []
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"{select}(SELECT value FROM json_each(%s)){extra}", [json.dumps(list(codes)), *params])
            return cursor.fetchall()
        for chunk in _chunks(list(codes), _param_limit(alias) - len(params)):
            cursor.execute(f"{select}({', '.join(['%s'] * len(chunk))}){extra}", [*chunk, *params])
            rows.extend(cursor.fetchall())
    return rows


# Every item master column the engine may use (INSRT_DT is bookkeeping, not an attribute).
_FETCH_COLUMNS = [c for c in ITEM_COLUMNS if c != "INSRT_DT"]


def _fetch_items(codes: list[str]) -> dict[str, dict[str, Any]]:
    """`{ITEM_CD: {column: value}}` of the codes found in the item master (query 1)."""
    return {row[0]: dict(zip(_FETCH_COLUMNS, row, strict=True)) for row in _select_by_codes(Item, _FETCH_COLUMNS, codes)}


def _key_attributes(codes: set[str]) -> dict[str, dict]:
    """`{ITEM_CD: {key attribute: value}}` of the neighbours shown (query 3)."""
    rows = _select_by_codes(Item, ["ITEM_CD", *NEIGHBOUR_ATTRIBUTES], sorted(codes))
    return {row[0]: dict(zip(NEIGHBOUR_ATTRIBUTES, row[1:], strict=True)) for row in rows}


_ROUTING_COLUMNS = [
    "ITEM_CD",
    "ROUT_NO",
    "PROC_SEQ",
    "JOB_CD",
    "JOB_NM",
    "RES_CD",
    "INSIDE_FLAG",
    "TIME_UNIT",
    "SETUP_TIME",
    "RUN_TIME",
    "RUN_TIME_QTY",
    "INSRT_DT",
]


def _current_routings(codes: list[str], when=None, with_inserted: bool = False) -> dict[str, dict]:
    """`{item_cd: {"signature", "operations"}}` of the current ERP routing of each code that has one (query 2).

    The rule is `erp.frames.current_routing_rows` (as everywhere): among the routings valid now, the
    one whose newest operation has the latest INSRT_DT, ties to the highest ROUT_NO. The SQL keeps to
    a plain validity filter and the choice among an item's few routings is the rule's. Times are
    converted to minutes, run time per one unit, with the ERP's TIME_UNIT table. `when`: now by default.
    `with_inserted=True` adds `"inserted"`: the routing's newest INSRT_DT (None when empty), for planner
    agreement, which asks whether the routing was entered after a prediction.
    """
    from django.utils import timezone

    from erp.frames import TIME_UNIT_TO_MINUTES, current_routing_mask
    from erp.models import RoutingOperation

    alias = router.db_for_read(RoutingOperation) or "default"
    connection = connections[alias]
    qn = connection.ops.quote_name
    now = connection.ops.adapt_datetimefield_value(when or timezone.now())
    valid = f"({qn('VALID_FROM_DT')} IS NULL OR {qn('VALID_FROM_DT')} <= %s) AND ({qn('VALID_TO_DT')} IS NULL OR {qn('VALID_TO_DT')} >= %s)"
    rows = _select_by_codes(RoutingOperation, _ROUTING_COLUMNS, codes, valid, [now, now])

    # Which routing is current: the one rule, erp.frames' (validity is already filtered above).
    current = current_routing_mask([r[0] for r in rows], [r[1] for r in rows], [r[11] for r in rows])

    kept = sorted((r for r, keep in zip(rows, current, strict=True) if keep), key=lambda r: (r[0], r[2]))
    # Minutes for every operation at once (tens of thousands of values in a batch's context), rounded as round() would.
    factor = np.array([TIME_UNIT_TO_MINUTES.get(str(r[7]).strip().upper(), 1.0) if r[7] else 1.0 for r in kept], dtype=np.float64)
    per = np.array([r[10] if r[10] and r[10] > 0 else 1.0 for r in kept], dtype=np.float64)
    setups = json_numbers(np.array([np.nan if r[8] is None else r[8] for r in kept], dtype=np.float64) * factor, ANSWER_DECIMALS)
    runs = json_numbers(np.array([np.nan if r[9] is None else r[9] for r in kept], dtype=np.float64) * factor / per, ANSWER_DECIMALS)

    routings: dict[str, dict] = {}
    for (code, _rout_no, seq, job, name, res, flag, _unit, _setup, _run, _qty, inserted), setup, run in zip(
        kept, setups, runs, strict=True
    ):
        entry = routings.setdefault(code, {"signature": [], "operations": []})
        if with_inserted and inserted is not None and (entry.get("inserted") is None or inserted > entry["inserted"]):
            entry["inserted"] = inserted
        elif with_inserted:
            entry.setdefault("inserted", None)
        entry["signature"].append(job)
        entry["operations"].append(
            {
                "proc_seq": int(seq),
                "job_cd": job,
                "job_nm": name,
                "res_cd": res,
                "inside_flag": flag,
                "setup_minutes": setup,
                "run_minutes_per_unit": run,
            }
        )
    return routings


def current_routing(item_cd: str) -> dict | None:
    """The item's current ERP routing (`{"signature", "operations"}`, minutes and run minutes per unit), or None.

    The same rule and units as the `existing_routing` of a prediction, so the item page and the
    result page always agree.
    """
    return _current_routings([item_cd]).get(item_cd)


def current_routings(codes: Sequence[str], *, with_inserted: bool = False, when=None) -> dict[str, dict]:
    """The current ERP routings of many items at once (`{item_cd: {"signature", "operations"[, "inserted"]}}`); `when`: now by default."""
    codes = list(dict.fromkeys(codes))
    return _current_routings(codes, when=when, with_inserted=with_inserted) if codes else {}


def newest_routing_inserts(codes: Sequence[str], when, after=None) -> dict[str, Any]:
    """`{item_cd: newest INSRT_DT}` over each item's routing operations valid at `when` (items with none are absent);
    `after`: only items with such an operation entered after it.

    One aggregated row per item, not every operation: planner agreement only needs the routings of
    items with an operation entered after their prediction (the current routing's newest INSRT_DT is
    one of these operations', so it can never be later than this). The value is the driver's: a
    datetime, or on SQLite the stored text (an aggregate has no declared type), which `_aware` reads.
    """
    from erp.models import RoutingOperation

    codes = list(dict.fromkeys(codes))
    if not codes:
        return {}
    connection = connections[router.db_for_read(RoutingOperation) or "default"]
    qn = connection.ops.quote_name
    now = connection.ops.adapt_datetimefield_value(when)
    valid = f"({qn('VALID_FROM_DT')} IS NULL OR {qn('VALID_FROM_DT')} <= %s) AND ({qn('VALID_TO_DT')} IS NULL OR {qn('VALID_TO_DT')} >= %s)"
    params = [now, now]
    if after is not None:
        valid += f" AND {qn('INSRT_DT')} > %s"
        params.append(connection.ops.adapt_datetimefield_value(after))
    rows = _query_by_codes(RoutingOperation, f"{qn('ITEM_CD')}, MAX({qn('INSRT_DT')})", codes, valid, params, group_by=qn("ITEM_CD"))
    return {code: newest for code, newest in rows if newest is not None}


# --------------------------------------------------------------------------------------------
# Export in the ERP's routing layout
# --------------------------------------------------------------------------------------------

# BI_ROUTING_VIEW's columns, in order: the same layout `import_erp --routings` reads.
ERP_ROUTING_COLUMNS: tuple[str, ...] = (
    "ITEM_CD", "ROUT_NO", "PROC_SEQ", "JOB_CD", "JOB_NM", "RES_CD", "RES_DIS", "INSIDE_FLAG", "TIME_UNIT", "SETUP_TIME",
    "RUN_TIME", "RUN_TIME_QTY", "MFG_LT", "QUEUE_TIME", "WAIT_TIME", "MOVE_TIME", "VALID_FROM_DT", "VALID_TO_DT", "INSRT_DT",
)  # fmt: skip
# Routing number of an exported prediction: marks the rows as machine-made next to the ERP's 001, 002…
PREDICTED_ROUT_NO = "ML"
NEW_ITEM_CODE_PREFIX = "NEW-"


def work_centre_names(res_codes: Iterable[str]) -> dict[str, str]:
    """RES_CD → RES_DIS as the ERP's routings name them (cached an hour; work centres rarely change)."""
    from django.core.cache import cache

    from erp.models import RoutingOperation

    wanted = sorted({c for c in res_codes if c})
    key = "predictions:res_dis"
    names: dict[str, str] = cache.get(key) or {}
    missing = [c for c in wanted if c not in names]
    if missing:
        # One indexed look-up per work centre (a few dozen exist): a DISTINCT over all routing rows
        # would scan millions of them.
        for code in missing:
            names[code] = (
                RoutingOperation.objects.filter(res_cd=code, res_dis__isnull=False).order_by().values_list("res_dis", flat=True).first()
                or ""
            )
        cache.set(key, names, 3600)
    return {c: names.get(c, "") for c in wanted}


def erp_routing_rows(batch: PredictionBatch, *, now=None) -> list[dict[str, Any]]:
    """The predicted routings as BI_ROUTING_VIEW rows: minutes, run time per 1 unit, valid from today, open-ended.

    Items in error have no rows. A new item without a code is written as NEW-1, NEW-2… (a
    placeholder the planner replaces before loading the file into the ERP).
    """
    from django.utils import timezone

    now = timezone.localtime(now or timezone.now()).replace(microsecond=0)
    valid_from = now.replace(hour=0, minute=0, second=0).strftime("%Y-%m-%d %H:%M:%S")
    inserted = now.strftime("%Y-%m-%d %H:%M:%S")
    results = [r for r in batch.results if r.ok]
    names = work_centre_names(op["res_cd"] for r in results for op in r.routing["operations"])
    rows, new_count = [], 0
    for result in results:
        code = result.item_cd
        if not code:
            new_count += 1
            code = f"{NEW_ITEM_CODE_PREFIX}{new_count}"
        for op in result.routing["operations"]:
            rows.append(
                {
                    "ITEM_CD": code,
                    "ROUT_NO": PREDICTED_ROUT_NO,
                    "PROC_SEQ": op["proc_seq"],
                    "JOB_CD": op["job_cd"],
                    "JOB_NM": op["job_nm"] or "",
                    "RES_CD": op["res_cd"] or "",
                    "RES_DIS": names.get(op["res_cd"] or "", ""),
                    "INSIDE_FLAG": op["inside_flag"] or "",
                    "TIME_UNIT": "MIN",
                    "SETUP_TIME": "" if op["setup_minutes"] is None else op["setup_minutes"],
                    "RUN_TIME": "" if op["run_minutes_per_unit"] is None else op["run_minutes_per_unit"],
                    "RUN_TIME_QTY": 1,
                    "MFG_LT": "",
                    "QUEUE_TIME": "",
                    "WAIT_TIME": "",
                    "MOVE_TIME": "",
                    "VALID_FROM_DT": valid_from,
                    "VALID_TO_DT": "",
                    "INSRT_DT": inserted,
                }
            )
    return rows
