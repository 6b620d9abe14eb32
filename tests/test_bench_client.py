"""The HTTP client of `bench_predictions`: a plain-socket HTTP/1.1 client, checked against a real HTTP server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from predictions.management.commands.bench_predictions import Client

BIG = b"x" * 3_000_000  # several reads on the client side


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        answer = json.dumps(
            {
                "path": self.path,
                "auth": self.headers.get("Authorization"),
                "type": self.headers.get("Content-Type"),
                "body": json.loads(body),
            }
        ).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self):
        if self.path == "/big":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BIG)))
            self.end_headers()
            self.wfile.write(BIG)
        else:  # no Content-Length: the body ends with the connection
            self.send_response(404)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"not here")
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server_port():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_bench_client_sends_json_with_the_token_and_reads_status_and_body(server_port):
    status, body = Client(server_port, token="abc").request("POST", "/api/v1/predictions/", {"item_codes": ["SLV-000001"]})
    assert status == 201
    assert json.loads(body) == {
        "path": "/api/v1/predictions/",
        "auth": "Bearer abc",
        "type": "application/json",
        "body": {"item_codes": ["SLV-000001"]},
    }


def test_bench_client_reads_a_large_body_by_its_length_and_one_without_length_to_the_end(server_port):
    client = Client(server_port)
    assert client.request("GET", "/big") == (200, BIG)
    assert client.request("GET", "/elsewhere") == (404, b"not here")
