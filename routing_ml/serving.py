"""gunicorn hooks that make the web workers share one copy of the code and the model (deploy/gunicorn.conf.py).

With `preload_app` the master imports Django and the application once; `when_ready` then loads
the active model version (memory-mapped arrays, encoder, estimators), warms it with one
prediction, closes the master's database connections and freezes the garbage collector's view
of every object made so far. Each worker is forked from that state: the code, the model's Python
objects and its mapped arrays are shared copy-on-write pages instead of one copy per worker, and
gc.freeze() keeps the collector from writing to (and so un-sharing) those pages.

Hot reload is unchanged: each worker still follows the active version on its own
(`registry.loader`, every MODEL_RELOAD_INTERVAL seconds), so a version activated later is loaded
by every worker within seconds; only the version that was active at start is shared.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


def preload_model() -> str | None:
    """Load (and warm) the active model version in this process; returns its label, None if there is none.

    A failure is logged, never raised: the workers then load the model themselves, as without preload.
    """
    from django.db import connections

    from registry.loader import loader

    label = None
    try:
        loader.refresh(force=True)
        label, model = loader.active()
        _warm(model)
        logger.info("Preloaded model version %s before forking the workers", label)
    except Exception as exc:  # no active version, database down, broken bundle: the workers will say so
        logger.warning("No model preloaded before forking the workers: %s", exc)
    finally:
        connections.close_all()  # a forked worker must never share the master's database connection
    return label


def _warm(model) -> None:
    """A few predictions through the service, rendered as the API renders them: the lazy imports, caches and
    first-call set-ups of the request path happen once, here, instead of in every worker's own memory."""
    from predictions.service import _vocabularies, predict_items
    from routing_ml.renderers import ORJSONRenderer

    _vocabularies(model)
    model.cache_signatures()
    codes = model.indexed_item_codes()
    if not codes:
        return
    step = max(1, len(codes) // 50)
    for batch in (codes[:1], codes[::step][:50]):
        for include_context in (True, False):
            answer = predict_items(item_codes=batch, include_context=include_context, channel="internal")
            ORJSONRenderer().render(answer.as_dict())


def when_ready(server) -> None:
    """gunicorn hook (master, before the first fork): preload the model when the app itself was preloaded."""
    if not server.cfg.preload_app:
        return
    _one_thread_per_worker()
    preload_model()
    gc.collect()
    gc.freeze()


def _one_thread_per_worker() -> None:
    """BLAS and OpenMP (scikit-learn's estimators) on one thread in every web worker, inherited through fork.

    gunicorn already runs a worker per core: threads inside each worker only fight the other
    workers for the same cores, and each thread's stack and BLAS buffer is that worker's own
    memory. The answers do not depend on it (tests/test_predictions_golden.py passes either way).
    """
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
    except Exception as exc:  # threadpoolctl missing or a library it cannot drive: keep the defaults
        logger.warning("Could not limit the web workers' BLAS/OpenMP threads: %s", exc)


def _load_malloc_trim():
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_malloc_trim = _load_malloc_trim()


def release_freed_memory() -> None:
    """Give the C heap's free pages back to the system (glibc's malloc_trim; a no-op elsewhere).

    A 1,000-item batch allocates some 100 MB of short-lived dicts, lists and arrays; once freed,
    glibc keeps most of it in the worker's heap, which then counts as the worker's own memory
    until the worker is recycled. Useful only once that memory *is* freed (see
    `ReleaseMemoryAfterLargeAnswers`); costs a millisecond or two.
    """
    if _malloc_trim is not None:
        _malloc_trim(0)


# An answer at least this large (bytes of body) is freed, and its memory handed back, as soon as it has been sent.
LARGE_ANSWER_BYTES = 1 << 20


class ReleaseMemoryAfterLargeAnswers:
    """WSGI middleware (routing_ml.wsgi): once a large answer has been sent, free it at once and trim the heap.

    A DRF response is never freed by reference counting: the view holds it (`view.response`) and it
    holds the view (`renderer_context`), so the answer of a 1,000-item batch (its ~50,000 dicts and
    lists, and the body) lives until the garbage collector's next collection of its generation. In a
    worker that mostly waits, that collection came only every ~10 batches, and the batches in
    between piled up: 15–30 MB of private memory per batch, never handed back. Measured on the
    325,000-item bench, a worker's private memory after twenty batches went from 202–305 MB to ~70 MB.

    Only a non-streaming answer of at least LARGE_ANSWER_BYTES is wrapped: the WSGI server gets an
    iterable whose `close()` first lets go of the answer's data and body (freed at once by reference
    counting, out of the cycle), then closes the response (its closers run as before), collects the
    cycles that remain and trims the C heap. Everything else (small answers, files, streams) passes
    through untouched.
    """

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        response = self.application(environ, start_response)
        if _is_large(response):
            return _FreedWhenClosed(response)
        return response


def _is_large(response) -> bool:
    if getattr(response, "streaming", True) or not hasattr(response, "has_header"):
        return False  # files and streams: the server sends them chunk by chunk (or with sendfile)
    try:
        size = int(response["Content-Length"]) if response.has_header("Content-Length") else len(response.content)
    except (TypeError, ValueError):
        return False
    return size >= LARGE_ANSWER_BYTES


class _FreedWhenClosed:
    """The body of a large answer for the WSGI server; closing it frees the answer and trims the heap."""

    def __init__(self, response):
        self._response = response

    def __iter__(self):
        return iter(self._response)

    def close(self) -> None:
        response, self._response = self._response, None
        if response is None:
            return
        # The answer goes first, before the response's closers turn the collector back on (predictions.api):
        # reference counting frees its ~50,000 dicts and lists and its body at once, so the collection below
        # walks only what else is alive, not the answer (a 1,000-item request: ~0.30 -> ~0.27 s CPU in
        # gunicorn). That collection still frees the response's own cycle with its view and request (~80
        # small objects): left to the collector's pace, they and earlier requests' cycles kept ~14 MB more of
        # a worker's memory (measured).
        _drop_answer(response)
        try:
            response.close()
        finally:
            del response
            gc.collect()
            release_freed_memory()


def _drop_answer(response) -> None:
    """Let go of a sent response's data (DRF) and body."""
    if hasattr(response, "data"):
        response.data = None
    response.content = b""


_gc_paused_here = False


def pause_gc() -> bool:
    """Turn the cyclic garbage collector off for one request; True if the caller must call `resume_gc()`.

    Safe if a resume was missed (a response that failed to render is never closed): the next pause
    takes the pause over instead of leaving the collector off for good without an owner.
    """
    global _gc_paused_here
    if _gc_paused_here:
        return True
    if not gc.isenabled():
        return False  # someone else turned it off: theirs to turn back on
    gc.disable()
    _gc_paused_here = True
    return True


def resume_gc() -> None:
    global _gc_paused_here
    if _gc_paused_here:
        _gc_paused_here = False
        gc.enable()
