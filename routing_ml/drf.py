"""DRF parser and pagination that refuse hostile input with a 400 instead of failing further in.

Kept apart from routing_ml.api: DRF imports these while its own views module loads.
"""

from __future__ import annotations

import codecs
import json

from django.conf import settings
from rest_framework import exceptions
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser

# Input no endpoint accepts: JSON nested deeper than this, integers longer than this many digits.
JSON_MAX_DEPTH = 32
JSON_MAX_INT_DIGITS = 30


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > JSON_MAX_INT_DIGITS:
        raise exceptions.ParseError(f"JSON parse error - an integer with {len(text.lstrip('-'))} digits is not a value any field accepts.")
    return int(text)


def _check_json_text(value, depth: int = 0) -> None:
    """Refuse JSON no field can hold: nesting beyond JSON_MAX_DEPTH, lone surrogates (not Unicode text) and NUL characters."""
    if depth > JSON_MAX_DEPTH:
        raise exceptions.ParseError(f"JSON parse error - nested deeper than {JSON_MAX_DEPTH} levels.")
    if isinstance(value, str):
        if "\x00" in value:
            raise exceptions.ParseError("JSON parse error - text must not contain the NUL character (\\u0000).")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise exceptions.ParseError("JSON parse error - text contains a lone surrogate (\\ud800-\\udfff), which is not Unicode text.")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json_text(key, depth + 1)
            _check_json_text(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json_text(item, depth + 1)


class SafeJSONParser(JSONParser):
    """DRF's JSON parser, refusing with a 400 (not a 500) what would break further in: deep nesting,
    integers too large for a float, lone surrogates and NUL characters, NaN and Infinity."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            data = json.load(codecs.getreader(encoding)(stream), parse_int=_parse_int, parse_constant=_refuse_constant)
        except RecursionError:
            raise exceptions.ParseError(f"JSON parse error - nested deeper than {JSON_MAX_DEPTH} levels.")
        except ValueError as exc:  # UnicodeDecodeError included
            raise exceptions.ParseError(f"JSON parse error - {exc}")
        _check_json_text(data)
        return data


def _refuse_constant(name: str):
    raise exceptions.ParseError(f"JSON parse error - {name} is not a number JSON allows.")


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """`?limit=` is capped (a huge limit overflowed the database's integer); a bad value falls back to the default."""

    max_limit = 500
