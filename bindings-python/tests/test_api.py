import base64
import hashlib
import hmac
import json
import pathlib
import re
import time

import pytest

import arbiter
from conftest import BUNDLE, ROOT, user_request


def test_version():
    assert arbiter.__version__.count(".") == 2


def test_authorize_json_speaks_the_contract(engine):
    answer = engine.authorize_json(json.dumps(user_request("alice", "push_code", "10")))
    assert json.loads(answer) == {"decision": "allow", "reasons": ["role-developer"], "errors": []}


def test_typed_authorize(engine):
    d = engine.authorize(**user_request("alice", "push_code", "10"))
    assert d.allowed and bool(d) and d.reasons == ["role-developer"] and d.errors == []
    assert repr(d) == "Decision(allowed=True, reasons=['role-developer'], errors=0)"
    d = engine.authorize(**user_request("bob", "push_code", "10"))
    assert not d.allowed and d.reasons == ["user-blocked"]


def test_decisions_compare_by_value(engine):
    allowed = engine.authorize(**user_request("alice", "push_code", "10"))
    again = engine.authorize(**user_request("alice", "push_code", "10"))
    denied = engine.authorize(**user_request("bob", "push_code", "10"))
    assert allowed is not again and allowed == again and hash(allowed) == hash(again)
    assert allowed != denied and allowed != "allow" and len({allowed, again, denied}) == 2
    failing = arbiter.Engine.from_files(bundle('@id("p") permit (principal, action, resource) when { principal.nope };'))
    request = {"principal": {"type": "User", "id": "1"}, "action": {"type": "Action", "id": "a"}, "resource": {"type": "R", "id": "1"}}
    [error] = failing.authorize(**request).errors
    [same] = failing.authorize(**request).errors
    assert (error.kind, error.policy) == ("policy_evaluation", "p") and error == same and hash(error) == hash(same)
    [refused] = failing.authorize(**request, token="not-a-token").errors
    assert refused != error and failing.authorize(**request) != failing.authorize(**request, token="not-a-token")
    assert repr(error) == f"DecisionError(kind='policy_evaluation', policy='p', message={error.message!r})"
    assert repr(refused).startswith("DecisionError(kind='unknown_issuer', policy=None, message='")


def test_request_entities_replace_static_ones_for_one_request(engine):
    blocked = {
        "uid": {"type": "Gitlab::User", "id": "alice"},
        "attrs": {"state": "blocked", "admin": False, "auditor": False, "external": False, "user_type": "human"},
        "parents": [],
    }
    d = engine.authorize(**user_request("alice", "push_code", "10", entities=[blocked]))
    assert not d.allowed and d.reasons == ["user-blocked"]
    assert engine.authorize(**user_request("alice", "push_code", "10")).allowed


def test_a_token_nobody_configured_is_a_deny_with_its_error(engine):
    request = user_request("alice", "read_project", "1", token="not-a-token")
    del request["principal"]
    d = engine.authorize(**request)
    assert not d.allowed
    [error] = d.errors
    assert (error.kind, error.policy) == ("unknown_issuer", None) and error.message


def test_verify_token(engine):
    info = engine.verify_token("eyJhbGciOiJub25lIn0.e30.")
    assert list(info) == ["valid", "error"] and info["valid"] is False
    assert info["error"]["kind"] == "unknown_issuer" and isinstance(info["error"]["message"], str)


def hs256(claims, secret):
    def segment(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signed = segment({"alg": "HS256", "typ": "JWT"}) + "." + segment(claims)
    signature = hmac.new(secret, signed.encode(), hashlib.sha256).digest()
    return signed + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def test_verify_token_reports_what_a_valid_token_says(monkeypatch):
    secret = b"a secret of thirty-two bytes!!!!"
    monkeypatch.setenv("ARBITER_TEST_SECRET", secret.decode())
    issuer = {"issuer": "py", "audiences": ["api"], "algorithms": ["HS256"], "hmac_secret_env": "ARBITER_TEST_SECRET",
              "principal": {"type": "User"}}
    engine = arbiter.Engine.from_files(bundle(**{"tokens.json": json.dumps({"jwt": {"issuers": [issuer]}})}))
    claims = {"iss": "py", "aud": "api", "sub": "42", "exp": int(time.time()) + 60, "groups": ["a", {"b": None}]}
    info = engine.verify_token(hs256(claims, secret))
    assert info == {"valid": True, "kind": "jwt", "principal": {"type": "User", "id": "42"}, "claims": claims}
    assert list(info) == ["valid", "kind", "principal", "claims"]
    forged = engine.verify_token(hs256(claims, b"another secret"))
    assert (forged["valid"], forged["error"]["kind"]) == (False, "bad_signature")


FEATURES = {"repository": "enabled", "issues": "enabled", "merge_requests": "enabled", "builds": "enabled",
            "container_registry": "enabled", "package_registry": "enabled"}


def test_entities_the_schema_refuses_are_errors_never_skipped_forbids(engine):
    """What a security review found the typed Rust path letting through: an attribute of the wrong
    type (which made the fail-closed `archived-read-only` forbid error out and be skipped) and an
    action entity regrouping actions (which let a job token remove a project). Both are
    InvalidEntitiesError here, single and in a batch; a key given twice in request JSON is refused."""
    def project(archived):
        return {"uid": {"type": "Gitlab::Project", "id": "10"}, "parents": [{"type": "Gitlab::Group", "id": "acme/platform"}],
                "attrs": {"visibility": "private", "archived": archived, "features": FEATURES, "job_token_allowlist": []},
                "tags": {"alice": {"access_level": 30}}}
    assert engine.authorize(**user_request("alice", "push_code", "10", entities=[project(False)])).allowed
    denied = engine.authorize(**user_request("alice", "push_code", "10", entities=[project(True)]))
    assert denied.reasons == ["archived-read-only"]
    regroup = {"uid": {"type": "Gitlab::Action", "id": "remove_project"}, "attrs": {},
               "parents": [{"type": "Gitlab::Action", "id": "job_token"}]}
    job = {**user_request("100", "remove_project", "3"), "principal": {"type": "Gitlab::CiJob", "id": "100"}}
    assert not engine.authorize(**job).allowed
    for request in [user_request("alice", "push_code", "10", entities=[project("true")]), {**job, "entities": [regroup]}]:
        with pytest.raises(arbiter.InvalidEntitiesError) as raised:
            engine.authorize(**request)
        assert raised.value.kind == "invalid_entities"
        assert isinstance(engine.authorize_many([request])[0], arbiter.InvalidEntitiesError)
    twice = ('{"principal": {"type": "Gitlab::User", "id": "eve"}, "action": {"type": "Gitlab::Action", "id": "push_code"}, '
             '"resource": {"type": "Gitlab::Project", "id": "3"}, "context": {"admin_mode": false, "admin_mode": true}}')
    with pytest.raises(arbiter.InvalidContextError):
        engine.authorize_json(twice)


def test_batches(engine):
    bad_context = {**user_request("alice", "push_code", "10"), "context": {"admin_mode": "thirty"}}
    answers = engine.authorize_many(
        [user_request("alice", "push_code", "10"), {"nonsense": 1}, 7, bad_context, user_request("bob", "push_code", "10")]
    )
    assert isinstance(answers[0], arbiter.Decision) and answers[0].allowed
    assert isinstance(answers[1], arbiter.MalformedRequestError) and answers[1].code == 200
    assert isinstance(answers[2], arbiter.MalformedRequestError)
    assert isinstance(answers[3], arbiter.InvalidContextError) and answers[3].kind == "invalid_context"
    assert isinstance(answers[4], arbiter.Decision) and answers[4].reasons == ["user-blocked"]
    assert engine.authorize_many([]) == []
    # Truthiness is "allowed": an error in place is falsy, so all() never passes a bad request.
    assert answers[0] and not answers[1] and not answers[3] and not answers[4]
    assert not all(engine.authorize_many([{"nonsense": 1}])) and not any(answers[1:4])
    assert all(engine.authorize_many((user_request("alice", "push_code", "10"),)))
    with pytest.raises(TypeError, match="list or tuple"):
        engine.authorize_many(user_request("alice", "push_code", "10"))
    raw = json.loads(engine.authorize_json_batch(json.dumps([user_request("alice", "push_code", "10"), 7])))
    assert raw[0]["decision"] == "allow" and raw[1]["error"]["kind"] == "malformed_request"


def bundle(policy="permit (principal, action, resource);", **extra):
    files = {"p.cedar": policy}
    files.update(extra)
    return files


@pytest.mark.parametrize(
    "files,error,kind,code",
    [
        (bundle("permit (principal,"), arbiter.PolicyParseError, "policy_parse", 102),
        (bundle(**{"manifest.json": '{"nope": 1}'}), arbiter.ManifestError, "manifest", 101),
        (bundle("permit (principal, action, resource) when { principal.x };", **{"schema.cedarschema": "entity User; action read appliesTo { principal: User, resource: User };"}),
         arbiter.PolicyValidationError, "policy_validation", 103),
        (bundle(**{"schema.cedarschema": "entity User = { x: Nope };"}), arbiter.SchemaError, "schema", 104),
        (bundle(**{"entities.json": "[{]"}), arbiter.EntitiesError, "entities", 105),
        (bundle(**{"links.json": '[{"template_id": "t", "link_id": "l", "args": {}}]'}), arbiter.LinksError, "links", 106),
        (bundle(**{"tokens.json": '{"jwt": {}}'}), arbiter.TokensError, "tokens", 107),
    ],
)
def test_each_load_error_has_its_class(files, error, kind, code):
    with pytest.raises(error) as raised:
        arbiter.Engine.from_files(files)
    assert isinstance(raised.value, arbiter.ArbiterError)
    assert (raised.value.kind, raised.value.code) == (kind, code)
    assert raised.value.message and str(raised.value)


def test_missing_bundle_dir():
    with pytest.raises(arbiter.IoError) as raised:
        arbiter.Engine.from_bundle_dir("/nonexistent/bundle")
    assert "/nonexistent/bundle" in str(raised.value) and raised.value.code == 100


@pytest.mark.parametrize(
    "change,error,kind",
    [
        (lambda r: r.pop("resource"), TypeError, None),
        (lambda r: r.update(resource={"type": "Gitlab::Project"}), arbiter.MalformedRequestError, "malformed_request"),
        (lambda r: r.update(action={"type": "Gitlab::Action", "id": "fly"}), arbiter.InvalidRequestError, "invalid_request"),
        (lambda r: r["context"].update(admin_mode="high"), arbiter.InvalidContextError, "invalid_context"),
        (lambda r: r.update(entities=[{"uid": {"type": "Gitlab::User", "id": "x"}, "attrs": {"state": 1}, "parents": []}]),
         arbiter.InvalidEntitiesError, "invalid_entities"),
    ],
)
def test_each_request_error_has_its_class(engine, change, error, kind):
    request = user_request("alice", "push_code", "10")
    change(request)
    with pytest.raises(error) as raised:
        engine.authorize(**request)
    if kind:
        assert raised.value.kind == kind and isinstance(raised.value, arbiter.ArbiterError)


def test_json_request_errors(engine):
    with pytest.raises(arbiter.MalformedRequestError):
        engine.authorize_json("{oops")
    with pytest.raises(arbiter.InvalidRequestError):
        engine.authorize_json(json.dumps(user_request("alice", "fly", "10")))


def test_every_kind_of_the_error_table_has_its_class():
    """Each kind of core's error table has its ``ArbiterError`` subclass, named after the kind
    (``PolicyParseError`` for ``policy_parse``), exported and declared in the stubs; the table is
    the C header's, code for code."""
    assert issubclass(arbiter.ArbiterError, Exception)
    header = (ROOT / "ffi-c" / "include" / "arbiter.h").read_text()
    c_codes = {name.lower(): int(code) for name, code in re.findall(r"ARBITER_RESULT_(\w+) = (\d+)", header)}
    del c_codes["ok"]
    assert {kind: code for code, kind, _ in arbiter.ERROR_KINDS} == c_codes
    stubs = (pathlib.Path(arbiter.__file__).parent / "_arbiter.pyi").read_text()
    for code, kind, name in arbiter.ERROR_KINDS:
        assert name == "".join(word.capitalize() for word in kind.split("_")) + "Error"
        assert issubclass(getattr(arbiter, name), arbiter.ArbiterError) and name in arbiter.__all__
        assert f"class {name}(ArbiterError):" in stubs, name
        assert f"kind ``{kind}``, code {code}" in " ".join(stubs.split()), name


def test_reload_keeps_the_old_bundle_on_failure(tmp_path):
    engine = arbiter.Engine.from_files(bundle('@id("a") permit (principal, action, resource);'))
    request = {"principal": {"type": "U", "id": "1"}, "action": {"type": "Action", "id": "x"}, "resource": {"type": "R", "id": "1"}}
    assert engine.authorize(**request).reasons == ["a"]
    with pytest.raises(arbiter.PolicyParseError):
        engine.reload_from_files(bundle("permit ("))
    with pytest.raises(arbiter.IoError):
        engine.reload_from_dir(tmp_path / "missing")
    assert engine.authorize(**request).reasons == ["a"]
    (tmp_path / "p.cedar").write_text('@id("b") permit (principal, action, resource);')
    engine.reload_from_dir(tmp_path)
    assert engine.authorize(**request).reasons == ["b"]


def test_the_embedded_default_bundle(engine):
    embedded = arbiter.Engine.gitlab_default()
    request = json.dumps(user_request("alice", "push_code", "10"))
    assert embedded.authorize_json(request) == engine.authorize_json(request)
    assert any(e["uid"]["id"] == "push_code" for e in json.loads(embedded.entities_json()))


def test_values_that_are_not_json_are_malformed_requests():
    engine = arbiter.Engine.from_files(bundle('@id("a") permit (principal, action, resource) when { context.n == [1, 2] };'))
    refs = {"principal": {"type": "U", "id": "1"}, "action": {"type": "Action", "id": "x"}, "resource": {"type": "R", "id": "1"}}
    assert engine.authorize(**refs, context={"n": (1, 2)}).reasons == ["a"]
    cyclic: dict = {}
    cyclic["self"] = cyclic
    for context, words in [(cyclic, "deeper than"), ({"n": object()}, "not JSON-like"), ({1: 2}, "keys must be str")]:
        with pytest.raises(arbiter.MalformedRequestError, match=words):
            engine.authorize(**refs, context=context)
    with pytest.raises(arbiter.MalformedRequestError, match="principal"):
        engine.authorize(**{**refs, "principal": {"type": "U", "id": 1}})
