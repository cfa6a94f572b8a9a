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
    for level in (30, 30, 20):
        engine.authorize(**user_request("alice", "push_code", "3", level))
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
    request = json.dumps(user_request("alice", "push_code", "3", 20))
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
