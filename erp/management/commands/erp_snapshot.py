"""Show, refresh, rebuild or drop the incremental ERP snapshot the trainings read (erp.snapshot)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from erp import snapshot


class Command(BaseCommand):
    help = (
        "Refresh the ERP snapshot under MODEL_ROOT/erp_snapshot (reads only the partitions that changed); "
        "--rebuild reads everything again, --status shows what is on disk, --drop removes it."
    )

    def add_arguments(self, parser):
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--rebuild", action="store_true", help="Ignore the snapshot on disk and read the ERP in full.")
        action.add_argument("--status", action="store_true", help="Show the snapshot on disk; read nothing.")
        action.add_argument("--drop", action="store_true", help="Remove the snapshot; the next training reads the ERP in full.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args, rebuild, status, drop, json: bool, **options):
        if drop:
            snapshot.drop()
            self._print({"dropped": str(snapshot.root())}, json, f"removed {snapshot.root()}")
            return
        if status:
            found = snapshot.status()
            lines = [
                f"{name}: {t['rows']:,} rows, {t['partitions']} partitions, markers: {t['kind']}"
                for name, t in (found.get("tables") or {}).items()
            ]
            self._print(found, json, "\n".join([f"snapshot: {found['snapshot'] or 'none'}", *lines]))
            return
        _, stats = snapshot.read_raw(rebuild=rebuild)
        result = {
            "mode": stats.mode,
            "rows_read": stats.rows_read,
            "partitions_read": stats.partitions_read,
            "seconds": round(stats.seconds, 2),
        }
        self._print(result, json, stats.summary())

    def _print(self, data: dict, as_json: bool, text: str) -> None:
        self.stdout.write(json_dumps(data) if as_json else text)


def json_dumps(data: dict) -> str:
    return json.dumps(data, default=str)
