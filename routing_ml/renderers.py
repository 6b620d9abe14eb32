"""The JSON renderer of the endpoints whose answers are large: orjson instead of the standard library's encoder.

Apart from routing_ml.drf, which DRF imports while its own settings load.
"""

from __future__ import annotations

import orjson
from rest_framework.renderers import JSONRenderer
from rest_framework.utils import encoders


class ORJSONRenderer(JSONRenderer):
    """JSON through orjson: the same compact UTF-8 text as DRF's JSONRenderer, several times faster.

    A 1,000-item prediction answer is some 7 MB of nested dicts; the standard library's encoder
    spent more time on it than the model. Used where the answers are plain JSON types (the
    predictions endpoint); anything else (a Decimal, a lazy string, a numpy scalar) is handed to
    DRF's own encoder, and the datetimes DRF would shorten to milliseconds never reach it there.
    """

    _options = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        if (renderer_context or {}).get("indent") or self.get_indent(accepted_media_type, renderer_context or {}):
            return super().render(data, accepted_media_type, renderer_context)
        return orjson.dumps(data, default=_drf_default, option=self._options)


_DRF_ENCODER = encoders.JSONEncoder()


def _drf_default(value):
    """What orjson cannot encode natively: DRF's encoder turns it into a JSON type (or raises TypeError)."""
    return _DRF_ENCODER.default(value)
