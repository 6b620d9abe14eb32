#!/usr/bin/env bash
# Start gunicorn and the django-q2 cluster together; Ctrl-C (or either one dying) stops both.
set -euo pipefail
: "${PY:=.venv/bin/python}" "${BIN:=.venv/bin}" "${HOST:=127.0.0.1}" "${PORT:=8000}" "${WEB_WORKERS:=2}"

# Prometheus multiprocess mode: every gunicorn worker and qcluster process writes its counters to
# files here and /metrics sums them (without it each scrape sees one worker's counts). The directory
# must start empty: files of an earlier run would be added to this run's counts.
export PROMETHEUS_MULTIPROC_DIR="$PWD/var/prometheus_multiproc"
rm -rf "$PROMETHEUS_MULTIPROC_DIR"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

"$PY" manage.py qcluster &
pids+=($!)
# Each worker memory-maps the model arrays, so the large ones share the page cache instead of being copied.
"$BIN/gunicorn" routing_ml.wsgi --bind "$HOST:$PORT" --workers "$WEB_WORKERS" --access-logfile - --timeout 120 &
web=$!
pids+=($web)

# The banner promises a working address: print it once /health answers, not when gunicorn was merely started.
: "${READY_TIMEOUT:=60}"
ready=""
for _ in $(seq 1 $((READY_TIMEOUT * 4))); do
  if ! kill -0 "$web" 2>/dev/null; then break; fi
  # Any HTTP answer counts (an unhealthy 503 or an HTTPS redirect is still the server answering).
  if "$PY" -c "import http.client, sys; c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=2); c.request('GET', '/health'); c.getresponse()" "$HOST" "$PORT" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.25
done
if [ -z "$ready" ]; then
  echo "Routing ML did not answer at http://$HOST:$PORT/health within ${READY_TIMEOUT} s; see the messages above." >&2
  exit 1
fi

cat <<MSG

  Routing ML is running ($([ "${DEBUG:-false}" = "true" ] && echo "DEBUG mode: development only" || echo "production settings, DEBUG off")).
    Planner pages   http://$HOST:$PORT/predict/
    Dashboards      http://$HOST:$PORT/quality/
    Admin           http://$HOST:$PORT/admin/
    API docs        http://$HOST:$PORT/api/docs/
    Health          http://$HOST:$PORT/health
  Another machine of the LAN: make run HOST=0.0.0.0 ALLOWED_HOSTS=<this host's name or address>.
  Press Ctrl-C to stop the web server and the task cluster.

MSG
wait -n
