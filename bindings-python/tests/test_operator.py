"""What operators use, through Python: metrics (a dict, and Prometheus text that the reference
client's parser, prometheus_client, reads back to the same numbers), explain, shadow evaluation
and signed bundles."""

import json
import pathlib
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

import arbiter
from conftest import user_request


def test_metrics_count_and_expose():
    engine = arbiter.Engine.gitlab_default()
    for user in ("alice", "alice", "eve"):
        engine.authorize(**user_request(user, "push_code", "10"))
    with pytest.raises(arbiter.MalformedRequestError):
        engine.authorize_json("{oops")
    m = engine.metrics()
    push = next(d for d in m["decisions"] if d["action"] == "Gitlab::Action::push_code")
    assert (push["allow"], push["deny"]) == (2, 1)
    assert m["request_errors"]["malformed_request"] == 1
    assert m["latency"]["count"] == 4
    assert m["latency"]["buckets"][-1] == {"le_seconds": None, "count": 4}
    assert m["bundle"]["name"] == "gitlab"

    families = {f.name: f for f in text_string_to_metric_families(engine.metrics_prometheus())}
    decisions = {
        (s.labels["action"], s.labels["decision"]): s.value
        for s in families["arbiter_decisions"].samples
    }
    assert decisions[("Gitlab::Action::push_code", "allow")] == 2
    assert decisions[("Gitlab::Action::push_code", "deny")] == 1
    histogram = families["arbiter_decision_duration_seconds"]
    assert histogram.type == "histogram"
    count = next(s for s in histogram.samples if s.name.endswith("_count"))
    assert count.value == 4
    assert families["arbiter_bundle_info"].samples[0].labels["name"] == "gitlab"


def test_explain_names_the_policies_behind_a_decision():
    engine = arbiter.Engine.gitlab_default()
    request = json.dumps(user_request("eve", "push_code", "10"))
    explanation = engine.explain(request)
    assert explanation["decision"] == "deny"
    developer = next(p for p in explanation["policies"] if p["id"] == "role-developer")
    assert (developer["effect"], developer["outcome"]) == ("permit", "not_satisfied")
    assert "30" in developer["condition"]
    assert engine.explain_text(request).startswith("DENY: no permit was satisfied\n")
    with pytest.raises(arbiter.MalformedRequestError):
        engine.explain("{oops")


def test_a_candidate_bundle_is_compared_but_never_decides():
    engine = arbiter.Engine.from_files({"p.cedar": '@id("live") permit (principal, action, resource);'})
    engine.set_candidate_from_files({"p.cedar": '@id("candidate") forbid (principal, action, resource);'})
    request = {"principal": {"type": "U", "id": "1"}, "action": {"type": "A", "id": "x"},
               "resource": {"type": "R", "id": "1"}}
    assert engine.authorize(**request).reasons == ["live"]
    report = engine.shadow_report()
    assert (report["agreements"], report["disagreements"]) == (0, 1)
    assert report["recent"][0]["candidate"]["reasons"] == ["candidate"]
    engine.clear_candidate()
    assert engine.shadow_report()["candidate"] is None


def test_a_signed_bundle_loads_and_an_altered_one_is_refused(tmp_path):
    root = pathlib.Path(__file__).resolve().parents[2]
    (tmp_path / "p.cedar").write_text('@id("signed") permit (principal, action, resource);')
    public_key = subprocess.run(
        [root / "target" / "release" / "arbiter", "bundle", "sign", "--bundle", tmp_path,
         "--key", root / "core" / "tests" / "fixtures" / "keys" / "ed.pem"],
        check=True, capture_output=True, text=True).stdout
    engine = arbiter.Engine.from_signed_bundle_dir(tmp_path, [public_key])
    with pytest.raises(arbiter.SignatureError):
        arbiter.Engine.from_signed_bundle_dir(tmp_path, [])
    (tmp_path / "p.cedar").write_text("forbid (principal, action, resource);")
    with pytest.raises(arbiter.SignatureError, match="changed since the bundle was signed") as raised:
        engine.reload_from_dir(tmp_path)
    assert raised.value.code == 108
    request = {"principal": {"type": "U", "id": "1"}, "action": {"type": "A", "id": "x"},
               "resource": {"type": "R", "id": "1"}}
    assert engine.authorize(**request).reasons == ["signed"]


def docs_engine():
    """Members of Team::"core" may do anything; the manifest marks `ip` sensitive."""
    return arbiter.Engine.from_files({
        "p.cedar": '@id("team") permit (principal in Team::"core", action, resource);',
        "entities.json": '[{"uid": {"type": "User", "id": "ann"}, "attrs": {}, '
        '"parents": [{"type": "Team", "id": "core"}]}]',
        "manifest.json": '{"name": "docs", "version": "3", "sensitive_attributes": ["ip"]}',
    })


def ann_reads(request_id):
    return {
        "principal": {"type": "User", "id": "ann"},
        "action": {"type": "Action", "id": "read"},
        "resource": {"type": "Doc", "id": "d1"},
        "context": {"ip": "10.0.0.1", "agent": "git"},
        "request_id": request_id,
    }


def test_every_deciding_call_hands_its_events_to_the_sink():
    engine = docs_engine()
    events = []
    engine.set_decision_log(lambda event: events.append(json.loads(event)))
    assert engine.authorize(**ann_reads("py-1")).allowed
    engine.authorize_json(json.dumps(ann_reads("py-2")))
    engine.authorize_many([ann_reads("py-3"), {"nonsense": 1}, ann_reads("py-4")])
    engine.authorize_json_batch(json.dumps([ann_reads("py-5")]))
    engine.explain(json.dumps(ann_reads("not-logged")))
    assert [e["request_id"] for e in events] == ["py-1", "py-2", "py-3", "py-4", "py-5"]
    first = events[0]
    assert first["bundle"] == {"name": "docs", "version": "3"}
    assert first["principal"] == {"type": "User", "id": "ann"}
    assert (first["decision"], first["reasons"]) == ("allow", ["team"])
    assert first["context"] == {"ip": "[masked]", "agent": "git"}
    assert first["latency_us"] > 0
    assert engine.metrics()["decision_log"]["logged"] == 5


def test_events_reach_the_sink_from_threads_deciding_without_the_gil():
    import threading

    engine = docs_engine()
    events = []
    engine.set_decision_log(events.append)
    batch = [ann_reads("batch")] * 50
    threads = [
        threading.Thread(target=lambda: [engine.authorize_many(batch) for _ in range(5)])
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(events) == 8 * 5 * 50


def test_options_sampling_rate_limit_and_clearing():
    engine = docs_engine()
    kept = []
    engine.set_decision_log(kept.append)
    with pytest.raises(ValueError, match="sample_rate"):
        engine.set_decision_log(print, sample_rate=1.5)
    with pytest.raises(ValueError, match="max_events_per_second"):
        engine.set_decision_log(print, max_events_per_second=0)
    with pytest.raises(TypeError):
        engine.set_decision_log("not callable")
    engine.authorize(**ann_reads("still"))
    assert len(kept) == 1, "a refused option changes nothing"

    limited = []
    engine.set_decision_log(limited.append, max_events_per_second=3)
    engine.authorize_many([ann_reads("limited")] * 100)
    assert 3 <= len(limited) <= 10
    assert engine.metrics()["decision_log"]["rate_limited"] == 100 - len(limited)

    sampled = []
    engine.set_decision_log(lambda e: sampled.append(json.loads(e)["request_id"]), sample_rate=0.5)
    for request_id in "abcdefghij":
        for _ in range(4):
            engine.authorize(**ann_reads(request_id))
    assert all(sampled.count(i) == 4 for i in set(sampled)), sampled

    engine.clear_decision_log()
    engine.authorize(**ann_reads("cleared"))
    assert "cleared" not in sampled


def test_a_sink_that_raises_loses_its_event_not_the_decision(monkeypatch):
    import sys

    engine = docs_engine()
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)

    def broken(event):
        raise RuntimeError("sink broke")

    engine.set_decision_log(broken)
    assert engine.authorize(**ann_reads("r")).allowed
    assert len(reported) == 1 and str(reported[0].exc_value) == "sink broke"
