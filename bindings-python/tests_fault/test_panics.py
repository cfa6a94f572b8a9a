"""A panic inside Arbiter, injected through the test-only hook of an extension built with the
`fault-injection` feature (`make fault-test`): every way of deciding answers a deny with an
`internal` error, from many threads; a reload that panics raises arbiter.InternalError and keeps
the old bundle; disarmed, the engine decides as before."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

import arbiter

REQUEST = {
    "principal": {"type": "User", "id": "ann"},
    "action": {"type": "Action", "id": "read"},
    "resource": {"type": "Doc", "id": "d1"},
}


def assert_internal_deny(decision):
    assert not decision.allowed
    assert decision.reasons == []
    assert [e.kind for e in decision.errors] == ["internal"]
    assert "fault injected while deciding" in decision.errors[0].message


def test_injected_panics_are_denies_and_reload_errors():
    e = arbiter.Engine.from_files({"p.cedar": '@id("all") permit (principal, action, resource);'})
    assert e.authorize(**REQUEST).allowed

    e._inject_panics(True)
    with ThreadPoolExecutor(8) as pool:
        for decision in pool.map(lambda _: e.authorize(**REQUEST), range(100)):
            assert_internal_deny(decision)
    for decision in e.authorize_many([REQUEST, REQUEST]):
        assert_internal_deny(decision)
    answer = json.loads(e.authorize_json(json.dumps(REQUEST)))
    assert (answer["decision"], answer["errors"][0]["kind"]) == ("deny", "internal")

    with pytest.raises(arbiter.InternalError, match="fault injected while reloading") as raised:
        e.reload_from_files({"p.cedar": "forbid (principal, action, resource);"})
    assert raised.value.code == 900

    e._inject_panics(False)
    decision = e.authorize(**REQUEST)
    assert decision.allowed and decision.reasons == ["all"]
