"""Append recent work orders whose times have drifted, to demonstrate (and test) the quality loop."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from erp.data import load_current_routings
from erp.models import WorkResult
from quality.sampling import newest_report_date


class Command(BaseCommand):
    help = (
        "Add new work orders after the newest one in the ERP in which the busiest work centres run slower "
        "(a worn machine, a new material lot): a realistic degradation that a quality cycle should catch."
    )

    def add_arguments(self, parser):
        parser.add_argument("--items", type=int, default=2000, help="Produced items that get new work orders.")
        parser.add_argument("--orders", type=int, default=2, help="New work orders per item.")
        parser.add_argument("--days", type=int, default=30, help="Spread the new orders over this many days after the newest work result.")
        parser.add_argument("--factor", type=float, default=4.0, help="Run-time multiplier on the drifted work centres.")
        parser.add_argument("--share", type=float, default=0.6, help="Share of operations (by volume) whose work centre drifts.")
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, items, orders, days, factor, share, seed, **options):
        if items < 1 or orders < 1 or days < 1 or factor <= 0 or not 0 < share <= 1:
            raise CommandError("--items, --orders and --days must be positive, --factor > 0 and 0 < --share ≤ 1.")
        newest = newest_report_date()
        if newest is None:
            raise CommandError("There are no work results yet: seed or import ERP data first.")
        rng = np.random.default_rng(seed)
        produced = list(WorkResult.objects.values_list("item_cd", flat=True).distinct().order_by("item_cd"))
        chosen = sorted(rng.choice(produced, size=min(items, len(produced)), replace=False).tolist())
        ops = load_current_routings(chosen)
        if ops.empty:
            raise CommandError("The chosen items have no current routing.")
        volume = ops["RES_CD"].fillna("?").value_counts()
        drifted = set(volume.index[: max(1, int(np.searchsorted(volume.cumsum().to_numpy() / volume.sum(), share) + 1))])
        rows = []
        for _ in range(orders):
            dates = newest + timedelta(days=1) + timedelta(days=1) * rng.integers(0, days, size=len(chosen))
            date_of = dict(zip(chosen, dates, strict=True))
            qty_of = dict(zip(chosen, np.maximum(1, rng.lognormal(3.0, 0.6, size=len(chosen)).round()), strict=True))
            noise = rng.lognormal(0.0, 0.15, size=len(ops))
            slow = ops["RES_CD"].isin(drifted).to_numpy()
            run = ops["RUN_MINUTES_PER_UNIT"].fillna(0).to_numpy() * np.where(slow, factor, 1.0) * noise
            setup = ops["SETUP_MINUTES"].fillna(0).to_numpy() * rng.lognormal(0.0, 0.15, size=len(ops))
            for i, op in enumerate(ops.itertuples(index=False)):
                qty = qty_of[op.ITEM_CD]
                rows.append(WorkResult(item_cd=op.ITEM_CD, rout_no=None, proc_seq=int(op.PROC_SEQ), job_cd=op.JOB_CD, res_cd=op.RES_CD,
                                       report_dt=date_of[op.ITEM_CD], order_qty=float(qty), bad_qty=0.0,
                                       setup_hours=float(setup[i]) / 60.0, mach_worked_hours=float(run[i]) * qty / 60.0))
        with transaction.atomic():
            WorkResult.objects.bulk_create(rows, batch_size=2000)
        self.stdout.write(
            f"Added {len(rows)} work-result rows for {len(chosen)} items after {newest:%Y-%m-%d}; "
            f"{len(drifted)} work centre(s) now run ×{factor:g}: {', '.join(sorted(drifted))}."
        )
