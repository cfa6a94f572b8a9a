"""arbiter.Refresher and the OpenTelemetry decision log: an HTTP source served by Python's own http.server (ETags, 304s, a server
that goes down), a bundle signed and packed by the CLI, the cache across a restart, the
status in the engine's metrics, decisions from other threads during refreshes, and a forked
child refreshing on its own."""

import http.server
import json
import os
import subprocess
import threading
import time

import pytest

import arbiter
from conftest import ROOT, user_request

CLI = ROOT / "target" / "release" / "arbiter"
KEY = ROOT / "core" / "tests" / "fixtures" / "keys" / "ed.pem"
REQUEST = {
    "principal": {"type": "U", "id": "1"},
    "action": {"type": "A", "id": "x"},
    "resource": {"type": "R", "id": "1"},
}


def signed_archive(tmp_path, name, policy):
    """A one-policy bundle signed and packed by the CLI: (archive bytes, public key PEM)."""
    bundle = tmp_path / name
    bundle.mkdir()
    (bundle / "p.cedar").write_text(policy)
    public = subprocess.run([CLI, "bundle", "sign", "--bundle", bundle, "--key", KEY],
                            check=True, capture_output=True, text=True).stdout
    archive = tmp_path / f"{name}.tar.gz"
    subprocess.run([CLI, "bundle", "pack", bundle, "--out", archive], check=True, capture_output=True)
    return archive.read_bytes(), public


class BundleServer:
    """Serves ``self.body`` with ETag ``self.etag``, a 304 to a matching If-None-Match, or
    ``self.failing`` (a status) when set."""

    def __init__(self, body, etag):
        self.body, self.etag, self.not_modified, self.failing = body, etag, 0, None
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if outer.failing:
                    self.send_response(outer.failing)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.headers.get("If-None-Match") == outer.etag:
                    outer.not_modified += 1
                    self.send_response(304)
                    self.send_header("ETag", outer.etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("ETag", outer.etag)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/bundle.tar.gz"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_an_http_source_with_etags_a_cache_and_threads(tmp_path):
    allow, public = signed_archive(tmp_path, "allow", "permit (principal, action, resource);")
    deny, _ = signed_archive(tmp_path, "deny", "forbid (principal, action, resource);")
    server = BundleServer(allow, '"a"')
    options = {"public_keys": [public], "cache_dir": tmp_path / "cache", "timeout": 2.0}
    refresher = arbiter.Refresher(server.url, **options)
    engine = refresher.start()
    assert engine.authorize(**REQUEST).allowed
    assert refresher.refresh(engine) == {"refreshed": "unchanged"}
    assert server.not_modified == 1

    # Threads decide while the bundle is swapped: each sees one bundle or the other, whole.
    server.body, server.etag = deny, '"d"'
    stop, seen = threading.Event(), set()

    def decide():
        while not stop.is_set():
            seen.add(engine.authorize(**REQUEST).allowed)

    threads = [threading.Thread(target=decide) for _ in range(4)]
    for t in threads:
        t.start()
    outcome = refresher.refresh(engine)
    stop.set()
    for t in threads:
        t.join()
    assert outcome["refreshed"] == "updated" and outcome["digest"].startswith("sha256:")
    assert not engine.authorize(**REQUEST).allowed
    assert seen <= {True, False}

    server.failing = 503
    with pytest.raises(arbiter.IoError, match="503"):
        refresher.refresh(engine)
    status = engine.metrics()["source"]
    assert (status["consecutive_failures"], status["served_from"]) == (1, "source")

    server.stop()
    restarted = arbiter.Refresher(server.url, **options).start()
    assert not restarted.authorize(**REQUEST).allowed
    assert restarted.metrics()["source"]["served_from"] == "cache"


def test_a_directory_source_in_a_forked_child(tmp_path):
    (tmp_path / "p.cedar").write_text("permit (principal, action, resource);")
    refresher = arbiter.Refresher(str(tmp_path), interval=3600)
    engine = refresher.start()
    assert refresher.refresh_if_due(engine) == {"refreshed": "not_due"}
    (tmp_path / "p.cedar").write_text("forbid (principal, action, resource);")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        answer = refresher.refresh(engine)["refreshed"] + " " + str(engine.authorize(**REQUEST).allowed)
        os.write(write, answer.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 100).decode() == "updated False"
    assert engine.authorize(**REQUEST).allowed, "the parent's engine is its own"


def test_bad_options_and_unsigned_remote_sources_raise():
    with pytest.raises(arbiter.InvalidArgumentError):
        arbiter.Refresher("oci://nohost")
    with pytest.raises(arbiter.InvalidArgumentError):
        arbiter.Refresher(".", timeout=0)
    with pytest.raises(arbiter.InvalidArgumentError, match="must be signed"):
        arbiter.Refresher("https://127.0.0.1:1/bundle.tar.gz").start()


class Collector:
    """An OTLP/HTTP receiver for JSON exports, keeping the log records."""

    def __init__(self):
        self.records = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                export = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                for resource_logs in export["resourceLogs"]:
                    for scope_logs in resource_logs["scopeLogs"]:
                        outer.records.extend(scope_logs["logRecords"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1/logs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_the_decision_log_as_opentelemetry_records():
    collector = Collector()
    engine = arbiter.Engine.gitlab_default()
    assert engine.otlp_stats() is None
    engine.export_decision_log_otlp(endpoint=collector.url, encoding="json", flush_interval=0.05)
    for _ in range(5):
        engine.authorize(**user_request("alice", "push_code", "10"))
    deadline = time.monotonic() + 10
    while engine.otlp_stats()["exported"] < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.otlp_stats() == {"exported": 5, "dropped": 0, "failed_exports": 0}
    assert len(collector.records) == 5
    attributes = {kv["key"]: kv["value"] for kv in collector.records[0]["attributes"]}
    assert attributes["decision"] == {"stringValue": "allow"}
    with pytest.raises(arbiter.InvalidArgumentError):
        engine.export_decision_log_otlp(endpoint="udp://x")
    engine.clear_decision_log()
    assert engine.otlp_stats() is None
    collector.server.shutdown()
