"""The one way the application writes CSV: cells that a spreadsheet would run as a formula are neutralised.

OWASP's rule for CSV injection: a text cell starting with `=`, `+`, `-`, `@`, a tab or a carriage
return is prefixed with a single quote, so Excel and LibreOffice show it as text instead of
evaluating it (`=HYPERLINK(...)`, `@SUM(...)`, DDE payloads). Such text reaches our files from
uploaded item codes and from ERP text columns (e.g. a work centre name in RES_DIS).

Only text is touched: numbers written as numbers (int, float, Decimal) stay numbers, so a numeric
column keeps its values and a negative time would still read as -5, not as the text '-5. The cost
is that a text cell really starting with one of these characters (an item code "-A12") carries the
quote in the file; a spreadsheet hides it, an ERP import must strip a leading `'`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """`value` as it may go into a CSV cell: text starting like a formula gets a leading `'`, anything else is unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


class SafeDictWriter(csv.DictWriter):
    """csv.DictWriter whose every row goes through `neutralise` (writeheader too: it calls writerow)."""

    def writerow(self, rowdict: Mapping[str, Any]):
        return super().writerow({key: neutralise(value) for key, value in rowdict.items()})

    def writerows(self, rowdicts: Iterable[Mapping[str, Any]]):
        for row in rowdicts:
            self.writerow(row)


class SafeWriter:
    """csv.writer whose rows go through `neutralise`."""

    def __init__(self, handle, **kwargs):
        self._writer = csv.writer(handle, **kwargs)

    def writerow(self, row: Iterable[Any]):
        return self._writer.writerow([neutralise(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]):
        for row in rows:
            self.writerow(row)
