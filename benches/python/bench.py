#!/usr/bin/env python3
"""Python benchmarks: Arbiter's wheel against cedarpy, cedarling-python and PyJWT on the same
policies, entities, requests and tokens. Writes median nanoseconds per call to
target/python-bench.json (benches/report.py turns them into BENCHMARKS.md rows).

Every subject is checked to give the expected answer before it is timed. Each figure is the
median of REPEATS runs of a loop sized to take about RUN_SECONDS."""

import base64
import json
import pathlib
import statistics
import sys
import tempfile
import time
import timeit

import arbiter
import cedarpy
import jwt
from cryptography.hazmat.primitives import serialization

from cedarling_peer import cedarling_decide, cedarling_engine

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "policies" / "gitlab"
TESTDATA = ROOT / "benches" / "go" / "testdata"
KEYS = ROOT / "core" / "tests" / "fixtures" / "keys"
OUT = ROOT / "target" / "python-bench.json"

REPEATS = 7
RUN_SECONDS = 0.25


def per_call_ns(fn):
    """Median time of one call of fn, in nanoseconds."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, int(number * RUN_SECONDS / 0.2))
    runs = timer.repeat(repeat=REPEATS, number=number)
    return statistics.median(runs) / number * 1e9


def policies_text(directory):
    return "\n".join(p.read_text() for p in sorted(directory.glob("*.cedar")))


def entity(entities, type_, id_):
    for e in entities:
        if e["uid"] == {"type": type_, "id": id_}:
            return e
    raise KeyError(f"{type_}::{id_}")


def decisions(results, workdir):
    """The default bundle (alice, a developer of project 10 in entities.json, pushes to it) and
    its slice."""
    gitlab = arbiter.Engine.from_bundle_dir(BUNDLE)
    cases = {
        "default_bundle": {
            "engine": gitlab,
            "policies": policies_text(BUNDLE),
            "schema": (BUNDLE / "schema.cedarschema").read_text(),
            # The engine's view of the entities: entities.json plus the schema's action hierarchy.
            "entities": json.loads(gitlab.entities_json()),
            "principal": ("Gitlab::User", "alice"),
            "action": ("Gitlab::Action", "push_code"),
            "resource": ("Gitlab::Project", "10"),
            "context": {"admin_mode": False},
            # A read-only token: the same push is denied.
            "deny_context": {"admin_mode": False, "token_scopes": ["read_api"]},
            # Cedarling's request entities carry no tags, so the project's authorizations (the
            # default bundle's memberships) cannot reach it.
            "cedarling": False,
        },
        "slice": {
            "engine": arbiter.Engine.from_files(
                {
                    "slice.cedar": (TESTDATA / "slice.cedar").read_text(),
                    "entities.json": (TESTDATA / "slice_entities.json").read_text(),
                }
            ),
            "policies": (TESTDATA / "slice.cedar").read_text(),
            "schema": None,
            "entities": json.loads((TESTDATA / "slice_entities.json").read_text()),
            "principal": ("User", "alice"),
            "action": ("Action", "push_code"),
            "resource": ("Project", "3"),
            "context": {"access_level": 30},
            # A guest: the same push is denied.
            "deny_context": {"access_level": 10},
            "cedarling": True,
        },
    }
    for name, case in cases.items():
        engine = case["engine"]
        ref = {key: {"type": case[key][0], "id": case[key][1]} for key in ("principal", "action", "resource")}

        def arbiter_py(context=case["context"], engine=engine, ref=ref):
            return engine.authorize(**ref, context=context).allowed

        def arbiter_py_json(engine=engine, request=json.dumps({**ref, "context": case["context"]})):
            return engine.authorize_json(request)

        # cedarpy at its fastest: policies, entities and schema parsed once into handles.
        policy_set = cedarpy.PolicySet.from_str(case["policies"])
        cedar_schema = cedarpy.Schema.from_str(case["schema"]) if case["schema"] else None
        cedar_entities = cedarpy.Entities.from_json_str(json.dumps(case["entities"]), schema=cedar_schema)
        names = {key: f'{case[key][0]}::"{case[key][1]}"' for key in ("principal", "action", "resource")}

        def cedarpy_handles(context=case["context"], names=names, policy_set=policy_set, entities=cedar_entities, schema=cedar_schema):
            return cedarpy.is_authorized({**names, "context": context}, policy_set, entities, schema=schema).allowed

        cedarling = cedarling_engine(case["policies"], case["schema"], case["entities"], workdir / name)
        principal = {"type": case["principal"][0], "id": case["principal"][1], "attrs": entity(case["entities"], *case["principal"])["attrs"]}
        resource = {"type": case["resource"][0], "id": case["resource"][1], "attrs": entity(case["entities"], *case["resource"])["attrs"]}

        def cedarling_py(context=case["context"], cedarling=cedarling, principal=principal, action=names["action"], resource=resource):
            return cedarling_decide(cedarling, principal, action, resource, context)

        subjects = [("arbiter_py", arbiter_py), ("cedarpy", cedarpy_handles)]
        if case["cedarling"]:
            subjects.append(("cedarling", cedarling_py))
        # Every subject allows the request and denies it in the denying context.
        for function, fn in subjects:
            assert fn() and not fn(case["deny_context"]), (name, function)
        assert json.loads(arbiter_py_json())["reasons"] == ["role-developer"], name
        for function, fn in subjects + [("arbiter_py_json", arbiter_py_json)]:
            results[f"py/decision/{name}/{function}"] = per_call_ns(fn)


# The ten abilities of the list page, as benches/ruby/bench.rb and the Rust core's
# batch/slice_1000 benchmark ask them.
LIST_PAGE_ACTIONS = [
    "read_project", "read_issue", "create_issue", "download_code", "read_merge_request",
    "read_pipeline", "push_code", "create_merge_request", "create_pipeline", "admin_project",
]


def list_page(results):
    """The Ruby benchmark's list page through Python: 100 projects (alice's role and the
    projects' switches varying), ten abilities each, as one authorize_many and as 1,000 calls."""
    levels = [10, 20, 30, 40, 50]
    entities = [{"uid": {"type": "User", "id": "alice"}, "attrs": {"state": "active"}, "parents": []}]
    entities += [
        {"uid": {"type": "Project", "id": str(i)},
         "attrs": {"archived": i % 10 == 9, "features": {"repository": "disabled" if i % 7 == 6 else "enabled"}},
         "parents": []}
        for i in range(100)
    ]
    engine = arbiter.Engine.from_files(
        {"slice.cedar": (TESTDATA / "slice.cedar").read_text(), "entities.json": json.dumps(entities)}
    )
    requests = [
        {"principal": {"type": "User", "id": "alice"}, "action": {"type": "Action", "id": action},
         "resource": {"type": "Project", "id": str(i)}, "context": {"access_level": levels[i % 5]}}
        for i in range(100)
        for action in LIST_PAGE_ACTIONS
    ]
    batch = [d.allowed for d in engine.authorize_many(requests)]
    assert batch == [engine.authorize(**r).allowed for r in requests]
    assert True in batch and False in batch

    def single_calls():
        return [engine.authorize(**r) for r in requests]

    results["py/checks_1000/slice/authorize_many"] = per_call_ns(lambda: engine.authorize_many(requests))
    results["py/checks_1000/slice/authorize"] = per_call_ns(single_calls)


def tokens(results):
    """HS256 and RS256 verification, the cache off, against PyJWT with the same key and checks."""
    secret = base64.b64decode((KEYS / "hs256.b64").read_text().strip())
    private = serialization.load_pem_private_key((KEYS / "rsa.pem").read_bytes(), password=None)
    public = private.public_key()
    claims = {"iss": "bench", "sub": "42", "aud": "api", "exp": int(time.time()) + 3600}
    numbers = public.public_numbers()
    n = base64.urlsafe_b64encode(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
    cases = {
        "hs256": (
            jwt.encode(claims, secret, algorithm="HS256"),
            {"hmac_secret_file": "hs.b64", "secret_encoding": "base64"},
            secret,
        ),
        "rs256": (
            jwt.encode(claims, private, algorithm="RS256", headers={"kid": "k1"}),
            {"jwks": {"keys": [{"kty": "RSA", "alg": "RS256", "kid": "k1", "n": n, "e": "AQAB"}]}},
            public,
        ),
    }
    for name, (token, key_config, key) in cases.items():
        algorithm = name.upper()
        issuer = {
            "issuer": "bench",
            "audiences": ["api"],
            "algorithms": [algorithm],
            "principal": {"type": "User"},
            **key_config,
        }
        engine = arbiter.Engine.from_files(
            {
                "p.cedar": "permit (principal, action, resource);",
                "tokens.json": json.dumps({"jwt": {"issuers": [issuer]}, "cache": {"max_entries": 0}}),
                "hs.b64": (KEYS / "hs256.b64").read_text(),
            }
        )

        def arbiter_py(engine=engine, token=token):
            return engine.verify_token(token)

        def pyjwt(token=token, key=key, algorithm=algorithm):
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience="api",
                issuer="bench",
                options={"require": ["exp"]},
            )

        assert arbiter_py()["valid"], name
        assert pyjwt()["sub"] == "42", name
        results[f"py/token/{name}/arbiter_py"] = per_call_ns(arbiter_py)
        results[f"py/token/{name}/pyjwt"] = per_call_ns(pyjwt)


def main():
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        decisions(results, pathlib.Path(workdir))
    list_page(results)
    tokens(results)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    for name, ns in sorted(results.items()):
        print(f"{name:45} {ns / 1000:9.2f} µs")


if __name__ == "__main__":
    sys.exit(main())
