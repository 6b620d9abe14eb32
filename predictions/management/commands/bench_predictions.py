"""Benchmark predictions through real HTTP against gunicorn: latency, batch throughput, worker memory.

Starts gunicorn (2 sync workers on a free loopback port) on the current DATABASE_URL and
MODEL_ROOT, logs in through the JWT endpoint as a planner it creates (or as --username),
then measures

* single-item requests, one at a time: p50/p95/p99 latency (bounded by --single-requests and --single-seconds);
* 1,000-item batch requests, --concurrency at a time: items per second (bounded by --batches),
  with the full answer and again with `include_context=false` (no current routings, no
  neighbour attributes);
* RSS / PSS / shared memory of each worker after the load (/proc/<pid>/smaps_rollup), read once the workers
  have finished (no CPU for 0.25 s: a worker frees a large answer just after sending it), and the PSS read at once;
* a naive peer on the same data, in this process once gunicorn has stopped: scikit-learn's
  `NearestNeighbors(algorithm="brute", metric="cosine")` fitted on the embedding the model
  indexes, answering the same items with the same batch sizes (its top-k neighbours only: no
  routing, no times), beside the engine's own in-process `predict` of those items; our times are
  printed as ratios of the peer's, which mean the same on any machine.

Gunicorn runs with deploy/gunicorn.conf.py (preloaded app and model, as in production; access
log off) and is stopped at the end whatever happens. Targets at 325k items (issue 12): p95 ≤ 5 ms
for one item, ≥ 6,000 items/s batched (≥ 12,000 without context), ≤ 250 MB PSS per worker.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from erp.models import Item
from registry.models import ModelVersion
from routing_ml.roles import PLANNERS

_OK_COUNT = re.compile(rb'"ok":\s*(\d+)')
TARGET_P95_MS = 5.0
TARGET_ITEMS_PER_S = 6000.0
TARGET_LEAN_ITEMS_PER_S = 12000.0
TARGET_PSS_MB = 250.0
BENCH_USER = "bench_predictions"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def smaps_rollup(pid: int) -> dict[str, int]:
    """Memory figures of a process in bytes (Rss, Pss, Shared_*, Private_*) from /proc/<pid>/smaps_rollup."""
    figures = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0].endswith(":") and parts[2] == "kB":
                figures[parts[0][:-1]] = int(parts[1]) * 1024
    except OSError:
        pass
    return figures


class Client:
    """One HTTP/1.1 request per connection (gunicorn's sync workers close after each response), on a plain socket.

    The whole request goes out in one send and the answer is read by its Content-Length (or to the
    end of the connection): the time measured is the server's and the wire's. http.client cost this
    client ~0.35 ms of CPU per request (its header parsing goes through the email package), a plain
    socket ~0.1 ms; on a one-item request that was part of the latency the benchmark reported.
    """

    def __init__(self, port: int, token: str | None = None):
        self.port = port
        self.token = token

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 120) -> tuple[int, bytes]:
        payload = json.dumps(body).encode() if body is not None else b""
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", "Accept: application/json", "Connection: close"]
        if body is not None:
            head.append("Content-Type: application/json")
        if self.token:
            head.append(f"Authorization: Bearer {self.token}")
        head.append(f"Content-Length: {len(payload)}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
            return _read_response(sock)


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    """(status, body) of one HTTP/1.x response: the body by Content-Length, else up to the end of the connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"the server closed the connection before the end of the headers: {data[:200]!r}")
        data += chunk
    head, _, content = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(b":") for line in lines[1:])}
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        raise ConnectionError("chunked answers are not expected from the benchmarked endpoints")
    length = int(headers[b"content-length"]) if b"content-length" in headers else None
    parts = [content]
    received = len(content)
    while length is None or received < length:
        chunk = sock.recv(1 << 20)
        if not chunk:
            if length is not None:
                raise ConnectionError(f"the server closed the connection after {received} of {length} body bytes")
            break
        parts.append(chunk)
        received += len(chunk)
    return status, b"".join(parts)[:length] if length is not None else b"".join(parts)


def _workers_cpu_seconds(master_pid: int) -> float:
    """User + system CPU seconds of the gunicorn master's worker processes so far."""
    import psutil

    try:
        return sum(sum(worker.cpu_times()[:2]) for worker in psutil.Process(master_pid).children())
    except psutil.Error:
        return float("nan")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


class Command(BaseCommand):
    help = "Benchmark POST /api/v1/predictions/ through gunicorn: single-item latency, 1,000-item batch throughput, worker memory."

    def add_arguments(self, parser):
        parser.add_argument("--workers", type=int, default=2)
        parser.add_argument("--single-requests", type=int, default=500, help="at most this many 1-item requests (default 500)")
        parser.add_argument("--single-seconds", type=float, default=60.0, help="…or stop the 1-item phase after this long (default 60 s)")
        parser.add_argument("--batches", type=int, default=10, help="number of batch requests (default 10)")
        parser.add_argument("--batch-size", type=int, default=None, help="items per batch (default PREDICTION_BATCH_LIMIT)")
        parser.add_argument("--concurrency", type=int, default=2, help="batch requests in flight at once (default 2 = one per worker)")
        parser.add_argument("--username", default=None, help="log in as this user (needs registry.predict) instead of creating one")
        parser.add_argument("--password", default=None)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--json", dest="json_path", default=None, help="also write the figures to this JSON file")
        parser.add_argument(
            "--peer-requests", type=int, default=100, help="1-item queries for the naive peer and the in-process engine (default 100)"
        )
        parser.add_argument("--no-peer", action="store_true", help="skip the naive scikit-learn peer")

    def handle(self, *args, **options):
        active = ModelVersion.objects.get_active()
        if active is None:
            raise CommandError("No model version is active. Train and activate one first: manage.py train --sync --activate")
        rng = np.random.default_rng(options["seed"])
        codes = np.array(list(Item.objects.order_by().values_list("item_cd", flat=True)), dtype=object)
        if len(codes) == 0:
            raise CommandError("The item master is empty. Seed or import ERP data first: manage.py seed_demo_erp --items 5000")
        batch_size = options["batch_size"] or settings.PREDICTION_BATCH_LIMIT
        username, password = self._user(options)

        port = free_port()
        server = self._start_gunicorn(port, options["workers"])
        figures: dict = {"model_version": active.label, "items_in_master": int(len(codes)), "workers": options["workers"]}
        try:
            self._wait_ready(server, port)
            status, body = Client(port).request("POST", "/api/v1/auth/token/", {"username": username, "password": password})
            if status != 200:
                raise CommandError(f"Could not obtain a JWT for {username}: HTTP {status} {body[:200]!r}")
            client = Client(port, json.loads(body)["access"])

            # Warm-up: the master loaded the model before forking; each worker's first requests still open its
            # database connection and touch the pages of the mapped arrays.
            for _ in range(4 * options["workers"]):
                status, body = client.request("POST", "/api/v1/predictions/", {"item_codes": [str(rng.choice(codes))]})
                if status != 200:
                    raise CommandError(f"The warm-up prediction failed: HTTP {status} {body[:300].decode(errors='replace')}")

            status, body = client.request("GET", "/health")  # from loopback: with each check's details
            model_check = json.loads(body).get("checks", {}).get("model", {}) if status in (200, 503) else {}
            figures["known_items_from"] = model_check.get("known_items_from", "unknown")
            figures["neighbour_search"] = model_check.get("neighbour_search", "unknown")
            figures["single"] = self._single(client, codes, rng, options["single_requests"], options["single_seconds"], server.pid)
            figures["batch"] = self._batches(client, codes, rng, options["batches"], batch_size, options["concurrency"], server.pid)
            figures["batch_lean"] = self._batches(
                client, codes, rng, options["batches"], batch_size, options["concurrency"], server.pid, context=False
            )
            # A worker frees a large answer once it has sent it (routing_ml.serving.ReleaseMemoryAfterLargeAnswers):
            # read the memory both at once and when every worker has finished, which is what it keeps.
            figures["memory_just_after"] = self._memory(server.pid)
            figures["memory_idle_after_s"] = self._wait_idle(server.pid)
            figures["memory"] = self._memory(server.pid)
        finally:
            self._stop(server)
        if not options["no_peer"]:
            figures["peer"] = self._peer(codes, np.random.default_rng(options["seed"]), options["peer_requests"], batch_size, figures)
        figures["targets"] = {
            "single_p95_ms": TARGET_P95_MS,
            "batch_items_per_s": TARGET_ITEMS_PER_S,
            "batch_lean_items_per_s": TARGET_LEAN_ITEMS_PER_S,
            "worker_pss_mb": TARGET_PSS_MB,
        }
        self._report(figures)
        if options["json_path"]:
            Path(options["json_path"]).write_text(json.dumps(figures, indent=2))

    # -- set-up ------------------------------------------------------------------------------
    def _user(self, options) -> tuple[str, str]:
        if options["username"]:
            if not options["password"]:
                raise CommandError("--username needs --password.")
            return options["username"], options["password"]
        User = get_user_model()
        password = secrets.token_urlsafe(16)
        user, _ = User.objects.get_or_create(username=BENCH_USER)
        user.set_password(password)
        user.is_active = True
        user.save()
        user.groups.add(Group.objects.get(name=PLANNERS))
        return BENCH_USER, password

    def _start_gunicorn(self, port: int, workers: int) -> subprocess.Popen:
        # Production's configuration (deploy/gunicorn.conf.py: preloaded app and model), on a free port.
        command = [
            sys.executable, "-m", "gunicorn", "-c", str(Path(settings.BASE_DIR) / "deploy" / "gunicorn.conf.py"),
            "routing_ml.wsgi:application",
            "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--timeout", "120",
            "--log-level", "warning", "--error-logfile", "-",
        ]  # fmt: skip
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "routing_ml.settings")}
        env["GUNICORN_ACCESSLOG"] = ""  # a line per request would be measured too
        # The rate limit protects production; a benchmark would trip it.
        env.setdefault("API_THROTTLE_RATE", "100000000/hour")
        self.stdout.write(f"Starting gunicorn ({workers} workers) on 127.0.0.1:{port} …")
        return subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, start_new_session=True)

    def _wait_ready(self, server: subprocess.Popen, port: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise CommandError(f"gunicorn exited with code {server.returncode} before serving.")
            try:
                if Client(port).request("GET", "/health", timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise CommandError(f"gunicorn did not answer /health within {timeout:.0f} s.")

    def _stop(self, server: subprocess.Popen) -> None:
        if server.poll() is not None:
            return
        server.send_signal(signal.SIGTERM)  # gunicorn's graceful stop: the master stops its workers
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)  # our own session: the master and its workers only
            server.wait(timeout=5)

    # -- phases ---------------------------------------------------------------------------------
    def _single(self, client: Client, codes, rng, max_requests: int, max_seconds: float, master_pid: int) -> dict:
        latencies, failures = [], 0
        # The workers' CPU time per request: on a busy machine the latencies include waiting for a core, this does not.
        cpu_before = _workers_cpu_seconds(master_pid)
        started = time.monotonic()
        while len(latencies) + failures < max_requests and time.monotonic() - started < max_seconds:
            code = str(rng.choice(codes))
            t0 = time.perf_counter()
            status, _ = client.request("POST", "/api/v1/predictions/", {"item_codes": [code]})
            elapsed = (time.perf_counter() - t0) * 1000
            if status == 200:
                latencies.append(elapsed)
            else:
                failures += 1
        served = len(latencies) + failures
        cpu = (_workers_cpu_seconds(master_pid) - cpu_before) * 1000 / served if served else float("nan")
        return {
            "requests": len(latencies),
            "failures": failures,
            "server_cpu_ms": round(cpu, 2),
            "p50_ms": round(percentile(latencies, 50), 2),
            "p95_ms": round(percentile(latencies, 95), 2),
            "p99_ms": round(percentile(latencies, 99), 2),
            "mean_ms": round(statistics.fmean(latencies), 2) if latencies else None,
        }

    def _batches(
        self, client: Client, codes, rng, batches: int, size: int, concurrency: int, master_pid: int, context: bool = True
    ) -> dict:
        payloads = [[str(c) for c in rng.choice(codes, size=min(size, len(codes)), replace=False)] for _ in range(batches)]

        def one(payload):
            t0 = time.perf_counter()
            status, body = client.request("POST", "/api/v1/predictions/", {"item_codes": payload, "include_context": context}, timeout=300)
            elapsed = time.perf_counter() - t0
            # The summary comes first in the body: read it without parsing megabytes of results
            # (the client shares the CPUs with the server).
            match = _OK_COUNT.search(body[:300]) if status == 200 else None
            ok = int(match.group(1)) if match else 0
            return status, elapsed, ok, len(body)

        cpu = _workers_cpu_seconds(master_pid)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            results = list(pool.map(one, payloads))
        wall = time.perf_counter() - started
        self._wait_idle(master_pid)  # each worker logs its last answer after sending it: that CPU is the request's too
        cpu = _workers_cpu_seconds(master_pid) - cpu
        items = sum(len(p) for p, r in zip(payloads, results, strict=True) if r[0] == 200)
        durations = [r[1] for r in results if r[0] == 200]
        return {
            "requests": len(results),
            "failures": sum(1 for r in results if r[0] != 200),
            "items_per_request": size,
            "concurrency": concurrency,
            "items_ok": sum(r[2] for r in results),
            "wall_seconds": round(wall, 3),
            "items_per_s": round(items / wall, 1) if wall else None,
            "request_p50_s": round(percentile(durations, 50), 3),
            "request_max_s": round(max(durations), 3) if durations else None,
            "response_mb": round(statistics.fmean(r[3] for r in results) / 1e6, 2) if results else None,
            "server_cpu_s": round(cpu / len(results), 3) if results else None,
        }

    def _peer(self, codes, rng, requests: int, batch_size: int, figures: dict) -> dict:
        """The naive peer (brute-force cosine kNN of scikit-learn) and the engine in-process, on the same items and batch sizes."""
        import pandas as pd
        from sklearn.neighbors import NearestNeighbors

        from registry.loader import loader

        _, model = loader.active()
        k = int(model.config.top_k)
        indexed = np.asarray(model.indexed_item_codes(), dtype=object)
        singles = [str(c) for c in rng.choice(indexed, size=min(requests, len(indexed)), replace=False)]
        n_batches = max(1, min(figures["batch"]["requests"], 3))
        batches = [[str(c) for c in rng.choice(indexed, size=min(batch_size, len(indexed)), replace=False)] for _ in range(n_batches)]
        self.stdout.write(f"Naive peer: NearestNeighbors(brute, cosine) on {model.neighbors.n_items:,} × {model.neighbors.emb.shape[1]} …")

        def embedding(items: list[str]) -> np.ndarray:
            return model.embed(pd.DataFrame({"ITEM_CD": items}))[0]

        t0 = time.perf_counter()
        peer = NearestNeighbors(n_neighbors=k + 1, algorithm="brute", metric="cosine").fit(np.asarray(model.neighbors.emb))
        fit_s = time.perf_counter() - t0

        def timed(call, inputs) -> list[float]:
            out = []
            for item in inputs:
                t = time.perf_counter()
                call(item)
                out.append(time.perf_counter() - t)
            return out

        # The peer gets each item's embedding (as the model does) and answers k + 1 neighbours (the item itself among them).
        peer_single = timed(lambda code: peer.kneighbors(embedding([code]), n_neighbors=k + 1), singles)
        ours_single = timed(lambda code: model.predict(pd.DataFrame({"ITEM_CD": [code]})), singles)
        # The engine's CPU time for the same items on one BLAS thread, as in a web worker (routing_ml.serving).
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            cpu_started = time.process_time()
            for code in singles:
                model.predict(pd.DataFrame({"ITEM_CD": [code]}))
            engine_cpu_ms = (time.process_time() - cpu_started) * 1000 / len(singles)
        peer_batch = timed(lambda items: peer.kneighbors(embedding(items), n_neighbors=k + 1), batches)
        ours_batch = timed(lambda items: model.predict(pd.DataFrame({"ITEM_CD": items})), batches)
        peer_single_ms = percentile(peer_single, 50) * 1000
        peer_batch_s = statistics.fmean(peer_batch)
        return {
            "k": k,
            "fit_seconds": round(fit_s, 3),
            "queries_single": len(singles),
            "batches": len(batches),
            "peer_single_p50_ms": round(peer_single_ms, 2),
            "engine_single_p50_ms": round(percentile(ours_single, 50) * 1000, 2),
            "engine_single_cpu_ms": round(engine_cpu_ms, 2),
            "http_single_p50_ms": figures["single"]["p50_ms"],
            "peer_batch_s": round(peer_batch_s, 3),
            "engine_batch_s": round(statistics.fmean(ours_batch), 3),
            "http_batch_p50_s": figures["batch"]["request_p50_s"],
            "ratio_engine_single": round(percentile(ours_single, 50) * 1000 / peer_single_ms, 3),
            "ratio_http_single": round(figures["single"]["p50_ms"] / peer_single_ms, 3),
            "ratio_engine_batch": round(statistics.fmean(ours_batch) / peer_batch_s, 3),
            "ratio_http_batch": round(figures["batch"]["request_p50_s"] / peer_batch_s, 3),
        }

    def _wait_idle(self, master_pid: int, timeout: float = 10.0, quiet: float = 0.25) -> float:
        """Wait until no worker uses CPU for `quiet` seconds (at most `timeout`); returns the seconds waited."""
        import psutil

        started = time.monotonic()

        def cpu() -> list[float]:
            try:
                return [sum(w.cpu_times()[:2]) for w in psutil.Process(master_pid).children()]
            except psutil.Error:
                return []

        last = cpu()
        while time.monotonic() - started < timeout:
            time.sleep(quiet)
            now = cpu()
            if now == last:
                break
            last = now
        return round(time.monotonic() - started, 2)

    def _memory(self, master_pid: int) -> list[dict]:
        import psutil

        rows = []
        try:
            workers = psutil.Process(master_pid).children()
        except psutil.Error:
            return rows
        for worker in workers:
            rollup = smaps_rollup(worker.pid)
            rss = rollup.get("Rss") or worker.memory_info().rss
            shared = rollup.get("Shared_Clean", 0) + rollup.get("Shared_Dirty", 0)
            rows.append(
                {
                    "pid": worker.pid,
                    "rss_mb": round(rss / 2**20, 1),
                    "pss_mb": round(rollup.get("Pss", 0) / 2**20, 1),
                    "shared_mb": round(shared / 2**20, 1),
                    "private_mb": round((rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)) / 2**20, 1),
                }
            )
        return rows

    # -- report ---------------------------------------------------------------------------------
    def _report(self, f: dict) -> None:
        s, b, lean = f["single"], f["batch"], f["batch_lean"]
        ok_single = s["p95_ms"] <= TARGET_P95_MS
        ok_batch = (b["items_per_s"] or 0) >= TARGET_ITEMS_PER_S
        ok_lean = (lean["items_per_s"] or 0) >= TARGET_LEAN_ITEMS_PER_S
        ok_memory = bool(f["memory"]) and max(r["pss_mb"] for r in f["memory"]) <= TARGET_PSS_MB
        mark = {True: "ok", False: "MISSED"}
        lines = [
            "",
            f"Prediction benchmark — model {f['model_version']}, {f['items_in_master']:,} items, {f['workers']} gunicorn workers",
            f"known items answered from: {f['known_items_from']}; neighbour search: {f['neighbour_search']}",
            "",
            f"{'figure':<38}{'value':>14}  target",
            f"{'-' * 38}{'-' * 14}  {'-' * 20}",
            f"{'1-item requests (ok / failed)':<38}{s['requests']:>8} / {s['failures']:<3}",
            f"{'1-item latency p50':<38}{s['p50_ms']:>11.2f} ms",
            f"{'1-item latency p95':<38}{s['p95_ms']:>11.2f} ms  ≤ {TARGET_P95_MS:.0f} ms  {mark[ok_single]}",
            f"{'1-item latency p99':<38}{s['p99_ms']:>11.2f} ms",
            f"{'server CPU per 1-item request':<38}{s['server_cpu_ms']:>11.2f} ms",
            f"{'batch requests (ok / failed)':<38}{b['requests'] - b['failures']:>8} / {b['failures']:<3}",
            f"{'items per batch × concurrency':<38}{b['items_per_request']:>8} × {b['concurrency']}",
            f"{'batch request p50':<38}{b['request_p50_s']:>12.3f} s",
            f"{'server CPU per batch request':<38}{b['server_cpu_s']:>12.3f} s  (include_context=false: {lean['server_cpu_s']:.3f} s)",
            f"{'batch throughput':<38}{(b['items_per_s'] or 0):>8.0f} items/s  ≥ {TARGET_ITEMS_PER_S:,.0f}/s  {mark[ok_batch]}",
            f"{'batch response size':<38}{b['response_mb']:>11.2f} MB",
            f"{'… with include_context=false':<38}{(lean['items_per_s'] or 0):>8.0f} items/s  ≥ {TARGET_LEAN_ITEMS_PER_S:,.0f}/s  "
            f"{mark[ok_lean]}  ({lean['response_mb']:.2f} MB, {lean['failures']} failed)",
            "",
            f"{'worker pid':<12}{'RSS MB':>10}{'PSS MB':>10}{'shared MB':>12}{'private MB':>12}   PSS ≤ {TARGET_PSS_MB:.0f} MB  {mark[ok_memory]}",
        ]
        for row in f["memory"]:
            lines.append(f"{row['pid']:<12}{row['rss_mb']:>10.1f}{row['pss_mb']:>10.1f}{row['shared_mb']:>12.1f}{row['private_mb']:>12.1f}")
        if f["memory"]:
            lines.append(f"{'sum':<12}{sum(r['rss_mb'] for r in f['memory']):>10.1f}{sum(r['pss_mb'] for r in f['memory']):>10.1f}")
            at_once = " / ".join(f"{r['pss_mb']:.1f}" for r in f["memory_just_after"])
            lines.append(
                f"(read when the workers had finished, {f['memory_idle_after_s']:.2f} s after the last answer; "
                f"read at once, while they were still freeing it: PSS {at_once} MB)"
            )
        p = f.get("peer")
        if p:
            lines += [
                "",
                f"Naive peer: scikit-learn NearestNeighbors(algorithm='brute', metric='cosine'), k = {p['k']} + 1, same items, "
                f"same batch sizes, in-process (fit {p['fit_seconds']:.2f} s)",
                f"{'':<24}{'peer':>12}{'engine':>12}{'HTTP':>12}{'engine/peer':>13}{'HTTP/peer':>11}",
                f"{'1 item, p50 (ms)':<24}{p['peer_single_p50_ms']:>12.2f}{p['engine_single_p50_ms']:>12.2f}{p['http_single_p50_ms']:>12.2f}"
                f"{p['ratio_engine_single']:>13.3f}{p['ratio_http_single']:>11.3f}",
                f"{str(b['items_per_request']) + ' items, mean (s)':<24}{p['peer_batch_s']:>12.3f}{p['engine_batch_s']:>12.3f}"
                f"{p['http_batch_p50_s']:>12.3f}{p['ratio_engine_batch']:>13.3f}{p['ratio_http_batch']:>11.3f}",
                "(the peer finds neighbours only; the engine and HTTP answer full routings with times; HTTP: p50 per request "
                "with 2 in flight)",
                f"1 item, CPU: the engine alone {p['engine_single_cpu_ms']:.2f} ms (one BLAS thread); a web worker per request "
                f"{s['server_cpu_ms']:.2f} ms; the difference {s['server_cpu_ms'] - p['engine_single_cpu_ms']:.2f} ms is HTTP, Django, "
                "authentication, the item's context and the prediction log (and the load: CPU time too grows on a busy machine)",
            ]
        self.stdout.write("\n".join(lines))
