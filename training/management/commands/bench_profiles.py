"""Benchmark: per demo factory profile, the trained model's held-out metrics beside a plain kNN on the same split.

No database: each profile is generated in memory with `erp.generator`, converted with `erp.frames`
and trained with `training.engine.train`; the plain kNN (`training.engine.yardstick`) then
predicts exactly the items the training held out, from the same frames. Exit status 0 either
way — it is a measurement; the PASS/FAIL line per profile says whether the issue 9 targets hold.
"""

from __future__ import annotations

import inspect
import time

from django.core.management.base import BaseCommand

from erp import frames, generator
from training.engine import EngineConfig, train
from training.engine.tables import assign_occurrences
from training.engine.yardstick import plain_knn

ROWS = ("process_match", "exact_match", "res_match", "mae", "trim_mae", "setup_mae", "items_evaluated")
# metric → (at least / at most, factor of the plain kNN's value)
TARGETS = {"process_match": (">=", 1.0), "exact_match": (">=", 1.0), "mae": ("<=", 0.85), "setup_mae": ("<=", 0.90)}


def available_profiles() -> list[str]:
    """Every profile `erp.generator` knows (only the seal factory when it has no PROFILES table)."""
    profiles = getattr(generator, "PROFILES", None)
    return list(profiles) if isinstance(profiles, dict) and profiles else ["seal"]


def generate_profile(profile: str, n_items: int, seed: int):
    """(items, routings, work results) of one profile, raw ERP frames."""
    if "profile" in inspect.signature(generator.generate).parameters:
        return generator.generate(n_items, seed=seed, profile=profile)
    if profile != "seal":
        raise ValueError(f"erp.generator has no profiles yet; only 'seal' is available, not {profile!r}")
    return generator.generate(n_items, seed=seed)


def engine_frames(profile: str, n_items: int, seed: int):
    """(items, current routings, actuals) in the engine's layout, as training reads them."""
    items, routings_raw, work_results = generate_profile(profile, n_items, seed)
    routings = frames.current_routings(routings_raw, when=getattr(generator, "DEFAULT_TODAY", None))
    actuals = frames.actuals_from_work_results(work_results)
    # OP_OCC: which operation of the routing each work-order row reports, as training places them.
    return items, routings, assign_occurrences(actuals, routings)


def verdict(model: dict, knn: dict) -> tuple[bool, list[str]]:
    """Whether every target holds, and one note per target ("mae 0.81x <= 0.85x ok")."""
    notes, passed = [], True
    for name, (op, factor) in TARGETS.items():
        ours, theirs = model.get(name), knn.get(name)
        if ours is None or theirs is None:
            notes.append(f"{name} n/a")
            passed = False
            continue
        ok = ours >= theirs * factor if op == ">=" else ours <= theirs * factor
        ratio = ours / theirs if theirs else float("inf") if ours else 1.0
        notes.append(f"{name} {ratio:.3f}x {op} {factor:.2f}x {'ok' if ok else 'MISSED'}")
        passed &= ok
    return passed, notes


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}"


class Command(BaseCommand):
    help = "Per demo factory profile: held-out metrics of the trained model beside a plain kNN (k=7) on the same split."

    def add_arguments(self, parser):
        parser.add_argument("--items", type=int, default=20_000, help="items generated per profile (default 20000)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--profiles", default=None, help=f"comma-separated (default: all: {','.join(available_profiles())})")

    def handle(self, *args, items, seed, profiles, **options):
        names = [p.strip() for p in profiles.split(",") if p.strip()] if profiles else available_profiles()
        summary = []
        for profile in names:
            self.stdout.write(f"== profile {profile}: {items} items, seed {seed}")
            item_frame, routings, actuals = engine_frames(profile, items, seed)
            result = train(item_frame, routings, actuals, EngineConfig())
            started = time.perf_counter()
            knn = plain_knn(item_frame, routings, actuals, result.holdout_items)
            knn_seconds = time.perf_counter() - started
            model = result.metrics

            self.stdout.write(f"{'metric':<16} | {'model':>10} | {'plain kNN':>10} | {'ratio':>7}")
            for name in ROWS:
                ours, theirs = model.get(name), knn.get(name)
                ratio = f"{ours / theirs:.3f}" if ours is not None and theirs else "-"
                self.stdout.write(f"{name:<16} | {_cell(ours):>10} | {_cell(theirs):>10} | {ratio:>7}")
            self.stdout.write(f"{'seconds':<16} | {result.duration_seconds:>10.1f} | {knn_seconds:>10.1f} | {'':>7}")
            self.stdout.write(
                f"selected: run {result.selected}, setup {result.selected_setup}, routing {result.selected_routing}, "
                f"work centre {model.get('selected_work_centre', 'vote')}; search chose "
                + ", ".join(f"{k} {v}" for k, v in ((model.get("search") or {}).get("chosen") or {}).items() if k in ("k", "weighting", "size_transform", "embedding"))
            )
            passed, notes = verdict(model, knn)
            line = f"{'PASS' if passed else 'FAIL'} {profile}: {'; '.join(notes)}"
            self.stdout.write(line)
            summary.append(line)
        if len(summary) > 1:
            self.stdout.write("== summary")
            for line in summary:
                self.stdout.write(line)
