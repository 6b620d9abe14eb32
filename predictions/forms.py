"""The planner's input forms: item codes (typed or a CSV file) and a new item described by its attributes."""

from __future__ import annotations

import codecs
import csv
import io
import re

from django import forms
from django.conf import settings
from django.core.cache import cache

from erp.labels import capitalised
from erp.models import Item
from registry.models import ModelVersion

from .service import ITEM_COLUMNS, NUMERIC_BOUNDS, NUMERIC_COLUMNS, clean_item_attributes, clean_item_codes

CSV_MAX_BYTES = 5 * 1024 * 1024
# UTF-16 is recognised by its byte-order mark (Excel's "Unicode text"); otherwise UTF-8 (with or
# without BOM), then CP949, the superset of EUC-KR that Excel exports from a Korean ERP use.
CSV_ENCODINGS = ("utf-8-sig", "cp949")
_CODE_SEPARATORS = re.compile(r"[\s,;]+")
_CSV_ERRORS_SHOWN = 10


def split_codes(text: str) -> list[str]:
    """Codes typed one per line or separated by commas (also semicolons, tabs, blanks); duplicates dropped, order kept."""
    return list(dict.fromkeys(clean_item_codes(_CODE_SEPARATORS.split(text or ""))))


def _model_version_choices() -> list[tuple[str, str]]:
    choices = [("", "The active version")]
    for label, is_active in ModelVersion.objects.ready().values_list("label", "is_active")[:50]:
        choices.append((label, f"{label} (active)" if is_active else label))
    return choices


class _PredictionOptions(forms.Form):
    top_k = forms.IntegerField(
        label="Similar items to consult",
        min_value=1,
        max_value=50,
        required=False,
        help_text="1 to 50; leave empty for the model's default.",
        widget=forms.NumberInput(attrs={"min": 1, "max": 50}),
    )
    model_version = forms.ChoiceField(label="Model version", required=False, choices=())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model_version"].choices = _model_version_choices()


class ItemCodesForm(_PredictionOptions):
    """Codes typed or pasted, and/or a CSV file of codes (column ITEM_CD) or of new items' attributes."""

    codes = forms.CharField(
        label="Item codes",
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "autocapitalize": "characters"}),
        help_text="One per line or separated by commas.",
    )
    csv_file = forms.FileField(
        label="…or a CSV file",
        required=False,
        help_text=(
            "A column ITEM_CD of item codes; or the item master's columns (PART_TYPE, ITEM_MATERIAL, OUTDIAMETER…) "
            "to describe new items, one per row (ITEM_CD optional)."
        ),
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )

    field_order = ["codes", "csv_file", "top_k", "model_version"]

    def clean_csv_file(self):
        upload = self.cleaned_data.get("csv_file")
        self.csv_codes, self.csv_items, self.csv_warnings = [], [], []
        if not upload:
            return upload
        if upload.size > CSV_MAX_BYTES:
            raise forms.ValidationError(f"The file is larger than {CSV_MAX_BYTES // 1024 // 1024} MB; split it.")
        self.csv_codes, self.csv_items, self.csv_warnings = parse_csv(upload.read())
        return upload

    def clean(self):
        cleaned = super().clean()
        codes = split_codes(cleaned.get("codes", ""))
        codes += [c for c in getattr(self, "csv_codes", []) if c not in set(codes)]
        items = getattr(self, "csv_items", [])
        if not self.errors and not codes and not items:
            raise forms.ValidationError("Enter item codes or choose a CSV file.", code="empty")
        limit = settings.PREDICTION_BATCH_LIMIT
        if len(codes) + len(items) > limit:
            field = "csv_file" if items or getattr(self, "csv_codes", []) else "codes"
            self.add_error(field, f"At most {limit} items at a time; this has {len(codes) + len(items)}. Split the list.")
        cleaned["item_codes"], cleaned["items"] = codes, items
        return cleaned


def parse_csv(data: bytes) -> tuple[list[str], list[dict], list[str]]:
    """(codes, new items, warnings) from a CSV file; ValidationError with line numbers for bad rows.

    A file whose only known column is ITEM_CD lists codes; a file with other item master columns
    describes new items (one per row). Unknown columns are ignored with a warning.
    """
    text = decode_csv(data)
    if not text.strip():
        raise forms.ValidationError("The file is empty.")
    first_line = text.splitlines()[0]
    delimiter = max((",", ";", "\t"), key=first_line.count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        return _parse_rows(reader)
    except csv.Error as exc:
        if "field limit" in str(exc):
            raise forms.ValidationError(f"line {reader.line_num}: a cell is longer than {csv.field_size_limit():,} characters; this is not an item list.")
        raise forms.ValidationError(f"line {reader.line_num}: not a readable CSV row ({exc}).")


def decode_csv(data: bytes) -> str:
    """The text of an uploaded CSV: UTF-8 (with or without BOM), UTF-16 (with BOM, or plainly so) or CP949/EUC-KR.

    Anything else is refused with a ValidationError naming the encodings read, never guessed
    into mojibake (a latin-1 fallback would accept any bytes, binary files included).
    """
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        encodings: tuple[str, ...] = ("utf-16",)
    elif len(data) >= 4 and data[1:4:2] == b"\0\0" and data[0:4:2] != b"\0\0":
        encodings = ("utf-16-le",)  # ASCII text in UTF-16 without a BOM: every other byte is 0
    elif len(data) >= 4 and data[0:4:2] == b"\0\0" and data[1:4:2] != b"\0\0":
        encodings = ("utf-16-be",)
    else:
        encodings = CSV_ENCODINGS
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "\x00" in text:
            break
        return text.removeprefix("\ufeff")
    raise forms.ValidationError(
        "The file is not text in UTF-8, UTF-16 or CP949/EUC-KR (or it contains NUL characters): "
        "save it from Excel as \"CSV UTF-8 (comma delimited)\"."
    )


def _parse_rows(reader) -> tuple[list[str], list[dict], list[str]]:
    header = [h.strip() for h in next(reader)]
    by_lower = {c.lower(): c for c in ITEM_COLUMNS}
    columns = [by_lower.get(h.lower()) for h in header]
    ignored = [h for h, c in zip(header, columns, strict=True) if c is None and h]
    known = [c for c in columns if c]
    if not known:
        raise forms.ValidationError(
            "The file needs a header with ITEM_CD, or item master columns such as PART_TYPE, ITEM_MATERIAL, OUTDIAMETER."
        )
    warnings = [f"Ignored columns not in the item master: {', '.join(ignored)}."] if ignored else []
    rows = [(line, row) for line, row in enumerate(reader, start=2) if any(cell.strip() for cell in row)]
    if set(known) <= {"ITEM_CD"}:
        position = columns.index("ITEM_CD")
        codes = list(dict.fromkeys(clean_item_codes(row[position] if position < len(row) else "" for _, row in rows)))
        if not codes:
            raise forms.ValidationError("The ITEM_CD column is empty.")
        return codes, [], warnings
    limit = settings.PREDICTION_BATCH_LIMIT
    if len(rows) > limit:
        raise forms.ValidationError(f"At most {limit} items at a time; the file has {len(rows)} rows. Split it.")
    items, problems = [], []
    for line, row in rows:
        raw = {c: v for c, v in zip(columns, row, strict=False) if c}
        clean, errors = clean_item_attributes(raw)
        if errors:
            problems.append(f"line {line}: " + "; ".join(msg if col == "__all__" else f"{col} {msg}" for col, msg in errors.items()))
        items.append(clean)
    if problems:
        shown = problems[:_CSV_ERRORS_SHOWN]
        more = len(problems) - len(shown)
        raise forms.ValidationError([*shown, *([f"…and {more} more rows with errors."] if more else [])])
    return [], items, warnings


# The attributes a planner is asked for, in the order asked: (ERP column, help). Labels: erp.labels.
NEW_ITEM_FIELDS: tuple[tuple[str, str], ...] = (
    ("PART_TYPE", "e.g. SLEEVE, GLAND, SEAL FACE"),
    ("ITEM_MATERIAL", ""),
    ("SealTypeGrup", ""),
    ("OUTDIAMETER", ""),
    ("INDIAMETER", "Smaller than the outer diameter."),
    ("OUTTHICKNESS", ""),
    ("RAW_MATL_KIND", ""),
    ("ITEM_TYPE", ""),
    ("IN_SEALTYPE_CD", ""),
    ("OUT_SEALTYPE_CD", ""),
    ("IN_SEALSIZE", ""),
    ("OUT_SEALSIZE", ""),
    ("ITEM_NM", "Optional; shown on the result."),
    ("ITEM_CD", "Optional; the code it will get in the ERP."),
)
# Columns offered with a list of the values the item master already uses.
SUGGESTED_COLUMNS = ("PART_TYPE", "ITEM_MATERIAL", "SealTypeGrup", "RAW_MATL_KIND", "ITEM_TYPE", "IN_SEALTYPE_CD", "OUT_SEALTYPE_CD")


def suggestions() -> dict[str, list[str]]:
    """Distinct values per suggested column (cached an hour: at 325k items the scans take about a second)."""
    cached = cache.get("predictions:suggestions")
    if cached is not None:
        return cached
    values = {}
    for column in SUGGESTED_COLUMNS:
        name = ITEM_COLUMNS[column].name
        values[column] = sorted(v for v in Item.objects.order_by().values_list(name, flat=True).distinct()[:300] if v)
    cache.set("predictions:suggestions", values, 3600)
    return values


class NewItemForm(_PredictionOptions):
    """One new item, described by the attributes that decide its routing."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("prefix", "new")
        super().__init__(*args, **kwargs)
        options = dict(self.fields)
        self.fields.clear()
        for column, help_text in NEW_ITEM_FIELDS:
            label = capitalised(column)
            if column in NUMERIC_COLUMNS:
                low, high, _ = NUMERIC_BOUNDS.get(column, (0.0, None, True))
                field = forms.FloatField(
                    label=label,
                    required=False,
                    min_value=low,
                    max_value=high,
                    help_text=help_text,
                    widget=forms.NumberInput(attrs={"step": "any", "min": f"{low:g}", **({"max": f"{high:g}"} if high else {})}),
                )
            else:
                attrs = {"list": f"suggest-{column}", "autocomplete": "off"} if column in SUGGESTED_COLUMNS else {}
                field = forms.CharField(
                    label=label,
                    required=False,
                    max_length=ITEM_COLUMNS[column].max_length,
                    help_text=help_text,
                    widget=forms.TextInput(attrs=attrs),
                )
            self.fields[column] = field
        self.fields.update(options)

    def clean(self):
        cleaned = super().clean()
        raw = {column: cleaned.get(column) for column, _ in NEW_ITEM_FIELDS if column not in self.errors}
        clean, errors = clean_item_attributes(raw)
        for column, message in errors.items():
            if column == "__all__":
                if not self.errors:
                    self.add_error(None, message[0].upper() + message[1:])
            elif column in self.fields and column not in self.errors:
                self.add_error(column, message[0].upper() + message[1:])
        cleaned["item"] = clean
        return cleaned
