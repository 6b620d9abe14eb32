"""A web worker hands a large answer's memory back as soon as the answer is sent (routing_ml.serving, routing_ml.wsgi)."""

from __future__ import annotations

import gc
import weakref

import pytest
from django.core.signals import request_finished
from django.db import close_old_connections
from django.http import HttpResponse, StreamingHttpResponse
from django.test import RequestFactory
from rest_framework.response import Response
from rest_framework.views import APIView

from routing_ml import serving
from routing_ml.serving import LARGE_ANSWER_BYTES, ReleaseMemoryAfterLargeAnswers


class _BigAnswerView(APIView):
    """Answers like the predictions API: a DRF response (which DRF keeps in a reference cycle with its view)."""

    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request):
        return Response({"results": [{"item": "x" * 1000, "n": n} for n in range(LARGE_ANSWER_BYTES // 1000 + 10)]})


@pytest.fixture
def trims(monkeypatch):
    """The calls to release_freed_memory; and, as Django's test client does, no database clean-up at request_finished."""
    calls = []
    monkeypatch.setattr(serving, "release_freed_memory", lambda: calls.append(True))
    request_finished.disconnect(close_old_connections)
    yield calls
    request_finished.connect(close_old_connections)


def _serve(make_response):
    """What a WSGI server does with the middleware: call, send every chunk, close, drop."""
    response = make_response()
    gc.collect()
    gc.disable()  # only the middleware may collect: the test sees what it freed, not what the collector did later
    try:
        closed = []
        response._resource_closers.append(lambda: closed.append(True))
        answer = weakref.ref(response)
        box = [response]
        del response
        body = ReleaseMemoryAfterLargeAnswers(lambda environ, start_response: box.pop())({}, None)
        wrapped = body is not answer()
        sent = b"".join(body)
        body.close()
        del body
        return sent, wrapped, closed, answer() is None
    finally:
        gc.enable()


def test_a_large_drf_answer_is_freed_and_the_heap_trimmed_as_soon_as_it_is_closed(trims):
    def answer():
        response = _BigAnswerView.as_view()(RequestFactory().get("/big"))
        return response.render()

    sent, wrapped, closed, freed = _serve(answer)

    assert wrapped and len(sent) >= LARGE_ANSWER_BYTES and sent.startswith(b'{"results":[{"item":"xxx')
    assert closed == [True]  # the response's own closers (e.g. the prediction log) still run
    assert freed  # DRF's view <-> response cycle no longer waits for the collector's next pass
    assert trims == [True]


def test_small_answers_and_streams_pass_through_untouched(trims):
    small = HttpResponse(b"x" * 1000)
    assert ReleaseMemoryAfterLargeAnswers(lambda environ, start_response: small)({}, None) is small
    stream = StreamingHttpResponse(iter([b"x" * LARGE_ANSWER_BYTES]))
    assert ReleaseMemoryAfterLargeAnswers(lambda environ, start_response: stream)({}, None) is stream
    assert trims == []


def test_the_served_wsgi_application_releases_large_answers():
    from routing_ml.wsgi import application

    assert isinstance(application, ReleaseMemoryAfterLargeAnswers)


class _Server:
    def __init__(self, preload_app: bool):
        self.cfg = type("Cfg", (), {"preload_app": preload_app})()


def test_the_master_freezes_the_collector_after_preloading_so_workers_share_its_objects(monkeypatch):
    calls = []
    monkeypatch.setattr(serving, "preload_model", lambda: calls.append("preload"))
    monkeypatch.setattr(serving, "_one_thread_per_worker", lambda: calls.append("threads"))
    monkeypatch.setattr(serving.gc, "collect", lambda *args: calls.append("collect") or 0)
    monkeypatch.setattr(serving.gc, "freeze", lambda: calls.append("freeze"))

    serving.when_ready(_Server(preload_app=True))
    assert calls == ["threads", "preload", "collect", "freeze"]  # frozen last: nothing made before the fork is walked again

    calls.clear()
    serving.when_ready(_Server(preload_app=False))
    assert calls == []  # nothing is shared without a preloaded app: each worker loads its own
