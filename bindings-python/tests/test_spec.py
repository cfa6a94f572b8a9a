"""The shared spec (tests/spec/errors.json) and the default bundle's decision tests, through the
package's own code: typed authorize, authorize_many and authorize_json. (Cedar's corpus runs
once, in core.)"""

import json

import pytest

import arbiter
from conftest import BUNDLE, ROOT

SPEC = json.loads((ROOT / "tests" / "spec" / "errors.json").read_text())


def assert_error(case, error):
    assert isinstance(error, arbiter.ArbiterError), case["name"]
    assert (error.kind, error.code) == (case["kind"], case["code"]), f"{case['name']}: {error}"


def is_json(text):
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("case", SPEC["requests"], ids=lambda c: c["name"])
def test_error_spec_requests(engine, case):
    text = case.get("request_text") or json.dumps(case["request"])
    with pytest.raises(arbiter.ArbiterError) as raised:
        engine.authorize_json(text)
    assert_error(case, raised.value)
    if is_json(text):
        [answer] = json.loads(engine.authorize_json_batch(f"[{text}]"))
        assert (answer["error"]["kind"], answer["error"]["code"]) == (case["kind"], case["code"])
    else:
        with pytest.raises(arbiter.MalformedRequestError):
            engine.authorize_json_batch(f"[{text}]")
    if "request" in case:
        with pytest.raises(arbiter.ArbiterError) as raised:
            engine.authorize(**case["request"])
        assert_error(case, raised.value)
        assert_error(case, engine.authorize_many([case["request"]])[0])


@pytest.mark.parametrize("case", SPEC["bundles"], ids=lambda c: c["name"])
def test_error_spec_bundles(case):
    with pytest.raises(arbiter.ArbiterError) as raised:
        arbiter.Engine.from_files(case["files"])
    assert_error(case, raised.value)


def test_default_bundle_decision_tests_through_typed_calls(engine):
    cases = [c for path in sorted((BUNDLE / "tests").glob("*.json")) for c in json.loads(path.read_text())["cases"]]
    assert len(cases) >= 200
    batch = engine.authorize_many([c["request"] for c in cases])
    for case, in_batch in zip(cases, batch):
        answers = [in_batch]
        if {"action", "resource"} <= case["request"].keys():
            try:
                answers.append(engine.authorize(**case["request"]))
            except arbiter.ArbiterError as e:
                answers.append(e)
        else:
            # Python's own signature refuses the call before Arbiter sees it.
            with pytest.raises(TypeError):
                engine.authorize(**case["request"])
        for answer in answers:
            if "error" in case:
                assert isinstance(answer, arbiter.ArbiterError) and answer.kind == case["error"], case["name"]
                continue
            assert isinstance(answer, arbiter.Decision), (case["name"], answer)
            assert answer.allowed == (case["decision"] == "allow"), case["name"]
            if "reasons" in case:
                assert sorted(answer.reasons) == sorted(case["reasons"]), case["name"]
            if "errors" in case:
                got = sorted((e.kind, e.policy) for e in answer.errors)
                assert got == sorted((e["kind"], e.get("policy")) for e in case["errors"]), case["name"]
