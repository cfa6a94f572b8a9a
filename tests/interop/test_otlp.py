"""Decision logs as OpenTelemetry log records, read by an independent OTLP decoder (the
opentelemetry-proto package and protobuf's own JSON reader): from `arbiter check` in both
encodings, and from `arbiter serve` to a receiver that never answers (decisions are all
answered; the records lost are counted)."""

import http.server
import json
import os
import pathlib
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARBITER = os.environ.get("ARBITER_BIN", str(ROOT / "target" / "release" / "arbiter"))


def request(user, action, project):
    return {"principal": {"type": "Gitlab::User", "id": user},
            "action": {"type": "Gitlab::Action", "id": action},
            "resource": {"type": "Gitlab::Project", "id": project},
            "context": {"admin_mode": False}}


class Receiver:
    """An OTLP/HTTP logs receiver: decodes each export with opentelemetry-proto and keeps its
    records; with `hang`, answers no request until released (then 503)."""

    def __init__(self, hang=False):
        self.requests, self.hang, self.release = [], hang, threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.hang:
                    outer.release.wait(30)
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                message = ExportLogsServiceRequest()
                if self.headers["Content-Type"] == "application/json":
                    json_format.Parse(body, message)
                else:
                    assert self.headers["Content-Type"] == "application/x-protobuf"
                    message.ParseFromString(body)
                outer.requests.append(message)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1/logs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def records(self):
        return [(resource_logs.resource, record)
                for export in self.requests
                for resource_logs in export.resource_logs
                for scope_logs in resource_logs.scope_logs
                for record in scope_logs.log_records]

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def attributes(record):
    return {kv.key: json_format.MessageToDict(kv.value) for kv in record.attributes}


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_check_sends_each_decision_as_a_log_record(tmp_path, encoding):
    receiver = Receiver()
    requests = [request(user, "push_code", "10") for user in ("alice", "eve", "bob")] * 20
    batch = tmp_path / "requests.jsonl"
    batch.write_text("".join(json.dumps(r) + "\n" for r in requests))
    out = subprocess.run([ARBITER, "check", "--requests", batch, "--otlp-endpoint", receiver.url,
                          "--otlp-encoding", encoding], capture_output=True, text=True)
    receiver.stop()
    assert out.returncode == 0, out.stderr
    decisions = [json.loads(line)["decision"] for line in out.stdout.splitlines()]
    records = receiver.records()
    assert len(records) == len(requests) == 60
    resource, first = records[0]
    assert {kv.key: kv.value.string_value for kv in resource.attributes} == {"service.name": "arbiter"}
    assert first.event_name == "arbiter.decision"
    assert first.severity_text == "INFO" and first.time_unix_nano > 1_700_000_000 * 10**9
    seen = [attributes(r) for _, r in records]
    assert [a["decision"]["stringValue"] for a in seen] == decisions
    assert [a["principal.id"]["stringValue"] for a in seen] == [r["principal"]["id"] for r in requests]
    alice = seen[0]
    assert alice["action.id"] == {"stringValue": "push_code"}
    assert alice["reasons"] == {"arrayValue": {"values": [{"stringValue": "role-developer"}]}}
    assert alice["context"] == {"kvlistValue": {"values": [{"key": "admin_mode", "value": {"boolValue": False}}]}}
    assert "latency_us" in alice and "request_id" not in alice
    assert records[0][1].body.string_value == "allow"


def test_check_with_the_receiver_down_decides_and_counts_what_was_lost(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = subprocess.run([ARBITER, "check", "--otlp-endpoint", f"http://127.0.0.1:{port}/v1/logs"],
                         input=json.dumps(request("alice", "push_code", "10")), capture_output=True, text=True)
    assert out.returncode == 0
    assert json.loads(out.stdout)["decision"] == "allow"
    assert "1 decision log records not exported" in out.stderr


def test_serve_answers_every_request_while_the_receiver_hangs(tmp_path):
    receiver = Receiver(hang=True)
    server = subprocess.Popen([ARBITER, "serve", "--grpc", "off", "--http", "127.0.0.1:0",
                               "--otlp-endpoint", receiver.url, "--otlp-max-queue", "10"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = json.loads(server.stdout.readline())["http"].rsplit(":", 1)[1]
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{base}/readyz")
                break
            except urllib.error.HTTPError:
                time.sleep(0.05)
        body = json.dumps({"subject": {"type": "Gitlab::User", "id": "alice"}, "action": {"name": "push_code"},
                           "resource": {"type": "Gitlab::Project", "id": "10"},
                           "context": {"admin_mode": False}}).encode()
        def evaluate(count):
            for _ in range(count):
                answer = urllib.request.urlopen(urllib.request.Request(
                    f"{base}/access/v1/evaluation", data=body, headers={"Content-Type": "application/json"}))
                assert json.loads(answer.read())["decision"] is True

        # A first batch goes out after a second and hangs (the export times out after 5 s);
        # meanwhile the queue holds 10 records and every other one is dropped, not waited for.
        evaluate(20)
        time.sleep(1.5)
        evaluate(200)
        metrics = urllib.request.urlopen(f"{base}/metrics").read().decode()
        dropped = next(int(line.split()[-1]) for line in metrics.splitlines()
                       if line.startswith('arbiter_server_decision_log_otlp_records_total{result="dropped"}'))
        assert dropped >= 190, metrics
    finally:
        receiver.release.set()
        server.terminate()
        server.wait(15)
        receiver.stop()
