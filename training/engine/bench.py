"""Benchmark of the engine: `python -m training.engine.bench --items 325000`.

Generates a demo factory with `erp.generator` (pure pandas/numpy, no Django), trains,
saves, loads and predicts, and prints time per training stage, peak memory, held-out
metrics per candidate, bundle size, load time and prediction latency.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .config import DEFAULT_CANDIDATES, EngineConfig
from .model import RoutingModel
from .pipeline import train


def _peak_rss_gib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _current_rss_gib() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() / 2**30
    except OSError:
        return float("nan")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def load_data(n_items: int, seed: int):
    """(items, routings, actuals) frames of the demo generator, in the engine's layout."""
    try:
        from erp.frames import actuals_from_work_results, current_routings
        from erp.generator import generate
    except ImportError as exc:  # the bench runs from the project root, where `erp` lives
        raise SystemExit(f"erp.generator / erp.frames are needed for the benchmark data ({exc}); run from the project root")
    items, routings_raw, work_results = generate(n_items, seed=seed)
    routings = current_routings(routings_raw)
    del routings_raw
    actuals = actuals_from_work_results(work_results)
    del work_results
    gc.collect()
    return items, routings, actuals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000, help="number of generated items")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", default=",".join(DEFAULT_CANDIDATES), help="comma-separated time candidates")
    parser.add_argument("--max-time-rows", type=int, default=None)
    parser.add_argument(
        "--min-improvement", type=float, default=None, help="override min_improvement_pct (e.g. -100 forces a learned candidate)"
    )
    parser.add_argument("--single", type=int, default=200, help="single-item predictions to time")
    parser.add_argument("--batches", type=int, default=5, help="1000-item batches to time")
    parser.add_argument("--bundle", default=None, help="keep the bundle in this directory")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    items, routings, actuals = load_data(args.items, args.seed)
    print(f"data: {len(items):,} items, {len(routings):,} routing ops, {len(actuals):,} actual rows in {time.perf_counter() - t0:.1f} s")
    print(f"rss before training: {_current_rss_gib():.2f} GiB (peak so far {_peak_rss_gib():.2f} GiB)")

    changes: dict = {"candidates": tuple(c for c in args.candidates.split(",") if c)}
    if args.max_time_rows:
        changes["max_time_rows"] = args.max_time_rows
    if args.min_improvement is not None:
        changes["min_improvement_pct"] = args.min_improvement
    config = EngineConfig().replace(**changes)
    result = train(items, routings, actuals, config)
    print(f"\ntrain: {result.duration_seconds:.1f} s, peak RSS {_peak_rss_gib():.2f} GiB")
    for stage, seconds in result.stage_seconds.items():
        print(f"  {seconds:7.2f} s  {stage}")
    print(f"dataset: {result.dataset_stats}")

    names = list(result.candidate_scores)
    keys = [
        "process_match",
        "exact_match",
        "op_f1",
        "mae",
        "trim_mae",
        "rmse",
        "setup_mae",
        "cv",
        "sample_count",
        "items_evaluated",
        "operations_compared",
    ]
    print("\nheld-out metrics" + "".join(f"{n:>14}" for n in names))
    for key in keys:
        print(f"  {key:<16}" + "".join(f"{_fmt(result.candidate_scores[n].get(key)):>14}" for n in names))
    print(f"selected: run {result.selected}, setup {result.selected_setup}")

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(args.bundle or tmp) / "bundle"
        t = time.perf_counter()
        manifest = result.model.save(directory)
        save_s = time.perf_counter() - t
        size = sum(f["bytes"] for f in manifest["files"].values())
        print(f"\nbundle: {size / 2**20:.1f} MiB in {len(manifest['files'])} files, saved in {save_s:.2f} s")
        t = time.perf_counter()
        model = RoutingModel.load(directory, mmap=True)
        print(f"load (verify sha256 + mmap): {time.perf_counter() - t:.3f} s")

        rng = np.random.default_rng(1)
        picks = rng.choice(len(items), size=min(args.single, len(items)), replace=False)
        model.predict(items.iloc[picks[:5]])  # warm-up: page in the mapped arrays
        lat = []
        for i in picks:
            row = items.iloc[[i]]
            t = time.perf_counter()
            model.predict(row)
            lat.append(time.perf_counter() - t)
        lat_ms = np.array(lat) * 1e3
        print(f"predict 1 item: p50 {np.percentile(lat_ms, 50):.2f} ms, p95 {np.percentile(lat_ms, 95):.2f} ms")
        by_code = [items.iloc[[i]][["ITEM_CD"]] for i in picks[:50]]
        t = time.perf_counter()
        for frame in by_code:
            model.predict(frame)
        print(f"predict 1 item by ITEM_CD only: mean {(time.perf_counter() - t) / len(by_code) * 1e3:.2f} ms")
        batch_s = []
        for _ in range(args.batches):
            batch = items.iloc[rng.choice(len(items), size=min(1000, len(items)), replace=False)]
            t = time.perf_counter()
            model.predict(batch)
            batch_s.append(time.perf_counter() - t)
        best = min(batch_s)
        print(
            f"predict 1000-item batch: median {np.median(batch_s) * 1e3:.0f} ms, best {best * 1e3:.0f} ms ({len(batch) / best:,.0f} items/s)"
        )
    print(f"peak RSS overall: {_peak_rss_gib():.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
