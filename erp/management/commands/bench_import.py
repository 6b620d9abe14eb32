"""Benchmark: import generated ERP CSV files (validation + bulk insert) into the current database."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from erp.generator import generate
from erp.importer import import_erp_files
from erp.models import Item


class Command(BaseCommand):
    help = "Write the demo factory's tables as CSV files, import them with import_erp and print rows per second (needs an empty ERP)."

    def add_arguments(self, parser):
        parser.add_argument("--items", type=int, default=20_000, help="Items to generate (20,000 give ~110,000 routing rows).")
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, items, seed, **options):
        if Item.objects.exists():
            raise CommandError("The ERP tables are not empty: point DATABASE_URL at a fresh database (make bench uses var/bench/import.sqlite3).")
        frames = generate(items, seed=seed)
        with tempfile.TemporaryDirectory() as folder:
            paths = {}
            for name, frame in zip(("items", "routings", "work_results"), frames, strict=True):
                paths[name] = Path(folder) / f"{name}.csv"
                frame.to_csv(paths[name], index=False, date_format="%Y-%m-%d %H:%M:%S")
            started = time.perf_counter()
            report = import_erp_files(**paths)
            wall = time.perf_counter() - started
        if not report.imported:
            raise CommandError("\n".join(str(e) for e in report.errors[:10]))
        rows = sum(t.rows for t in report.tables)
        for line in report.summary():
            self.stdout.write(line)
        self.stdout.write(json.dumps({"rows": rows, "wall_seconds": round(wall, 2), "rows_per_second": round(rows / wall)}))
