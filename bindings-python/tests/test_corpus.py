"""The default bundle's decision tests and Cedar's integration corpus through authorize_json."""

import json
import os
import pathlib
import tarfile

import arbiter
from conftest import BUNDLE, ROOT

CONFORMANCE = pathlib.Path(os.environ.get("ARBITER_CONFORMANCE_DIR", ROOT.parent / "shared" / "conformance" / "cedar-integration-tests"))


def test_default_bundle_decision_tests(engine):
    cases = 0
    for path in sorted((BUNDLE / "tests").glob("*.json")):
        for case in json.loads(path.read_text())["cases"]:
            cases += 1
            request = json.dumps(case["request"])
            if "error" in case:
                try:
                    engine.authorize_json(request)
                except arbiter.ArbiterError as e:
                    assert e.kind == case["error"], case["name"]
                else:
                    raise AssertionError(f"{case['name']}: expected an error")
                continue
            d = json.loads(engine.authorize_json(request))
            assert d["decision"] == case["decision"], case["name"]
            if "reasons" in case:
                assert sorted(d["reasons"]) == sorted(case["reasons"]), case["name"]
            if "errors" in case:
                got = sorted((e["kind"], e.get("policy")) for e in d["errors"])
                assert got == sorted((e["kind"], e.get("policy")) for e in case["errors"]), case["name"]
    assert cases >= 200


def test_cedar_conformance_corpus(tmp_path):
    with tarfile.open(CONFORMANCE / "corpus-tests.tar.gz") as archive:
        archive.extractall(tmp_path, filter="data")
    jobs = [(p, CONFORMANCE) for p in sorted((CONFORMANCE / "tests").glob("*/*.json"))]
    jobs += [(p, tmp_path) for p in sorted((tmp_path / "corpus-tests").glob("*.json")) if not p.name.endswith(".entities.json")]
    requests, disagreements = 0, []
    for path, base in jobs:
        test = json.loads(path.read_text())
        engines = {}
        for r in test["requests"]:
            validate = r.get("validateRequest", True)
            if validate not in engines:
                engines[validate] = arbiter.Engine.from_files({
                    "policies.cedar": (base / test["policies"]).read_text(),
                    "schema.cedarschema": (base / test["schema"]).read_text(),
                    "entities.json": (base / test["entities"]).read_text(),
                    "manifest.json": json.dumps({"validate_policies": False, "validate_requests": validate}),
                })
            request = {k: r[k] for k in ("principal", "action", "resource", "context")}
            requests += 1
            d = json.loads(engines[validate].authorize_json(json.dumps(request)))
            errors = sorted(e["policy"] for e in d["errors"])
            if (d["decision"], sorted(d["reasons"]), errors) != (r["decision"], sorted(r["reason"]), sorted(r["errors"])):
                disagreements.append(f"{path.name}: {r['description']}: {d}")
    assert not disagreements, disagreements[:10]
    assert requests == 62546
