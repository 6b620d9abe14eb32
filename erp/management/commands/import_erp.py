"""Import ERP CSV exports (items, routings, work results); all or nothing. Logic: `erp.importer`."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from erp.importer import MAX_REPORTED, import_erp_files


class Command(BaseCommand):
    help = (
        "Import CSV files whose headers are the ERP column names (BI_ITEM_INFO_VIEW, BI_ROUTING_VIEW, "
        "BI_WORK_ORDER_RESULTS). Every row is validated first; any invalid row aborts the whole import "
        "and is reported as file:line: reason. Rows of each item present in a file replace that item's "
        "existing rows in that file's table."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--items", metavar="FILE", help="CSV of BI_ITEM_INFO_VIEW rows")
        parser.add_argument("--routings", metavar="FILE", help="CSV of BI_ROUTING_VIEW rows")
        parser.add_argument("--work-results", metavar="FILE", help="CSV of BI_WORK_ORDER_RESULTS rows")

    def handle(self, *args, **options) -> None:
        if not (options["items"] or options["routings"] or options["work_results"]):
            raise CommandError("Nothing to import: give --items, --routings and/or --work-results.")
        if getattr(settings, "ERP_EXTERNAL", False):
            raise CommandError("ERP_DATABASE_URL is set: the ERP views are read-only; import into the default database instead.")
        started = time.perf_counter()
        report = import_erp_files(items=options["items"], routings=options["routings"], work_results=options["work_results"])
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
        if not report.ok:
            for error in report.errors[:MAX_REPORTED]:
                self.stderr.write(str(error))
            if len(report.errors) > MAX_REPORTED:
                self.stderr.write(f"... and {len(report.errors) - MAX_REPORTED:,} more")
            raise CommandError(f"{report.invalid_rows:,} invalid row(s); nothing was imported.")
        for line in report.summary():
            self.stdout.write(line)
        self.stdout.write(self.style.SUCCESS(f"Import finished in {time.perf_counter() - started:.1f} s"))
