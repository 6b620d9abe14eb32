"""Fill the ERP tables with a generated demo factory (`erp.generator`, one of its `PROFILES`)."""

from __future__ import annotations

import time
from datetime import date

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from erp import data
from erp.generator import DEFAULT_PROFILE, DEFAULT_TODAY, PROFILES, generate
from erp.models import Item, RoutingOperation, WorkResult

MAX_ITEMS = 5_000_000


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"Not a date: {value!r}. Use YYYY-MM-DD, e.g. 2026-06-01.")


class Command(BaseCommand):
    help = (
        "Generate demo ERP data (items, routings, work-order results) and bulk-write it into the "
        "BI_ITEM_INFO_VIEW / BI_ROUTING_VIEW / BI_WORK_ORDER_RESULTS tables. Refuses non-empty "
        "tables unless --replace; --if-empty does nothing when items already exist."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--items", type=int, required=True, help="number of items to generate (e.g. 5000; 325000 for full scale)")
        parser.add_argument(
            "--profile",
            default=DEFAULT_PROFILE,
            help=f"which demo factory: {', '.join(PROFILES)} (default {DEFAULT_PROFILE}); see erp/generator.py",
        )
        parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same data (default 0)")
        parser.add_argument("--drift-from", default=None, help="YYYY-MM-DD: some work centres/materials run slower from this date")
        parser.add_argument("--today", default=None, help=f"YYYY-MM-DD the data ends at (default {DEFAULT_TODAY.isoformat()})")
        parser.add_argument("--if-empty", action="store_true", help="exit successfully without writing if items already exist")
        parser.add_argument("--replace", action="store_true", help="delete all existing ERP rows first")

    def handle(self, *args, **options) -> None:
        n_items: int = options["items"]
        if n_items < 1 or n_items > MAX_ITEMS:
            raise CommandError(f"--items must be between 1 and {MAX_ITEMS:,}, got {n_items}.")
        profile: str = options["profile"]
        if profile not in PROFILES:
            raise CommandError(f"Unknown --profile {profile!r}. Choose one of: {', '.join(PROFILES)}.")
        if options["if_empty"] and options["replace"]:
            raise CommandError("--if-empty and --replace contradict each other; give one of them.")
        if getattr(settings, "ERP_EXTERNAL", False):
            raise CommandError("ERP_DATABASE_URL is set: the ERP views are read-only, demo data is not written there.")
        today = _date(options["today"]) if options["today"] else DEFAULT_TODAY
        drift_from = _date(options["drift_from"]) if options["drift_from"] else None
        if drift_from is not None and drift_from > today:
            raise CommandError(f"--drift-from {drift_from} is after the end of the data ({today}); no order would drift.")

        alias = data.erp_write_alias(Item)
        counts = data.table_counts()
        if any(counts.values()):
            if options["if_empty"]:
                self.stdout.write(f"ERP tables already hold data ({_describe(counts)}); nothing to do (--if-empty).")
                return
            if not options["replace"]:
                raise CommandError(f"ERP tables are not empty ({_describe(counts)}). Use --replace to delete them first.")

        started = time.perf_counter()
        items, routings, work_results = generate(n_items, seed=options["seed"], drift_from=drift_from, today=today, profile=profile)
        generated = time.perf_counter()
        self.stdout.write(
            f"Generated {len(items):,} {profile} items, {len(routings):,} routing operations, "
            f"{len(work_results):,} work results in {generated - started:.1f} s"
        )

        with transaction.atomic(using=alias):
            if options["replace"]:
                for model in (WorkResult, RoutingOperation, Item):
                    data.delete_rows(model, using=alias)
            with data.deferred_indexes((Item, RoutingOperation, WorkResult), alias):
                for model, frame in ((Item, items), (RoutingOperation, routings), (WorkResult, work_results)):
                    t0 = time.perf_counter()
                    written = data.insert_frame(model, frame, using=alias)
                    self.stdout.write(f"  {model._meta.db_table}: {written:,} rows in {time.perf_counter() - t0:.1f} s")
                t0 = time.perf_counter()
            self.stdout.write(f"  indexes rebuilt in {time.perf_counter() - t0:.1f} s")
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {len(items):,} items, {len(routings):,} routing operations, {len(work_results):,} work results "
                f"(profile {profile}, seed {options['seed']}{f', drift from {drift_from}' if drift_from else ''}) "
                f"in {time.perf_counter() - started:.1f} s"
            )
        )


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {name}" for name, n in counts.items())
