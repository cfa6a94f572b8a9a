#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora into DIR/<target>/ (default target/fuzz/corpus) from
the default bundle (policies/gitlab and its decision tests) and the conformance corpora in
../shared/conformance (Cedar's hand-written tests, Wycheproof's JWS cases, libmacaroons'
macaroons). Nothing here is copied into the repository."""

import base64
import glob
import gzip
import io
import hashlib
import hmac
import json
import os
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = os.path.join(ROOT, "policies", "gitlab")
CONFORMANCE = os.environ.get("ARBITER_CONFORMANCE_DIR", os.path.join(ROOT, "..", "shared", "conformance"))
NOW = 1_800_000_000  # arbiter_fuzz::NOW


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def sections(files):
    """A bundle as the fuzz targets read it: `=== path` lines, each followed by the file."""
    return "".join(f"=== {path}\n{contents}\n" for path, contents in files)


def bundle_files(root):
    out = []
    for path in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
        rel = os.path.relpath(path, root)
        if os.path.isfile(path) and not rel.startswith("tests") and not rel.endswith(".md"):
            out.append((rel, read(path)))
    return out


def gitlab_requests():
    for path in sorted(glob.glob(os.path.join(BUNDLE, "tests", "*.json"))):
        for case in json.loads(read(path))["cases"]:
            yield case["request"]


def cedar_tests():
    folder = os.path.join(CONFORMANCE, "cedar-integration-tests")
    for path in sorted(glob.glob(os.path.join(folder, "tests", "**", "*.json"), recursive=True)):
        test = json.loads(read(path))
        files = [("policies.cedar", read(os.path.join(folder, test["policies"]))),
                 ("entities.json", read(os.path.join(folder, test["entities"])))]
        if test.get("schema"):
            files.append(("schema.cedarschema", read(os.path.join(folder, test["schema"]))))
        requests = [{k: r[k] for k in ("principal", "action", "resource", "context")}
                    for r in test["requests"]]
        yield files, requests


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims, header=None):
    """A token the fuzz token engine accepts (issuer https://hs.example, its test key)."""
    secret = base64.b64decode(read(os.path.join(ROOT, "core", "tests", "fixtures", "keys", "hs256.b64")).strip())
    signing_input = b64url(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode()) + "." + \
        b64url(json.dumps(claims).encode())
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


def tokens():
    claims = {"iss": "https://hs.example", "aud": "api", "sub": "alice", "exp": NOW + 60}
    yield hs256(claims)
    yield hs256({**claims, "nbf": NOW - 10, "iat": NOW - 10, "jti": "j1"})
    yield hs256(claims, {"alg": "HS256", "kid": "k", "crit": ["b64"], "b64": False})
    wycheproof = json.loads(read(os.path.join(CONFORMANCE, "wycheproof", "json_web_signature_test.json")))
    for group in wycheproof["testGroups"]:
        for test in group["tests"]:
            if isinstance(test.get("jws"), str):
                yield test["jws"]


def macaroons():
    for path in sorted(glob.glob(os.path.join(CONFORMANCE, "libmacaroons", "*.vtest"))):
        for line in read(path).splitlines():
            words = line.split()
            if len(words) == 1 and len(line) > 20 or line.startswith("{"):
                yield line


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "fuzz", "corpus")
    seeds = {name: [] for name in ("request_json", "bundle_load", "jwt", "macaroon", "c_abi", "query", "http_request", "authzen", "bundle_archive")}
    requests = [json.dumps(r) for r in gitlab_requests()]
    tokens_ = list(tokens())
    default_bundle = bundle_files(BUNDLE)
    seeds["request_json"] += requests
    seeds["request_json"] += [json.dumps({**json.loads(requests[0]), "token": t}) for t in tokens_[:3]]
    seeds["bundle_load"].append(sections(default_bundle))
    for files, reqs in cedar_tests():
        seeds["bundle_load"].append(sections(files))
        seeds["request_json"] += [json.dumps(r) for r in reqs]
    seeds["jwt"] += tokens_
    seeds["macaroon"] += list(macaroons())
    # c_abi: a selector byte, then the call's input (fields separated by NUL bytes).
    c_abi = seeds["c_abi"]
    c_abi += [b"\x00" + r.encode() for r in requests[:50]]
    c_abi.append(b"\x01[" + ",".join(requests[:20]).encode() + b"]")
    c_abi += [b"\x02" + t.encode() for t in tokens_[:20]]
    for r in map(json.loads, requests[:50]):
        fields = [r["principal"]["type"], r["principal"]["id"], r["action"]["type"], r["action"]["id"],
                  r["resource"]["type"], r["resource"]["id"], json.dumps(r.get("context", {}))]
        if r.get("entities"):
            fields.append(json.dumps(r["entities"]))
        c_abi.append(b"\x03" + b"\x00".join(f.encode() for f in fields))
    c_abi.append(b"\x04" + b"\x00".join(part.encode() for f in default_bundle for part in f))

    # query: the decision tests' requests as queries (the resource's id left out), a member of
    # the fixture's projects (arbiter_fuzz::query_fixture), and the default SQL mapping.
    member = {"uid": {"type": "Gitlab::User", "id": "42"}, "parents": [],
              "attrs": {"state": "active", "admin": False, "auditor": False, "external": False, "user_type": "human", "id": "42"}}
    for r in map(json.loads, requests):
        if not isinstance(r.get("resource"), dict):
            continue
        r["resource"].pop("id", None)
        seeds["query"].append(json.dumps(r))
        seeds["query"].append(json.dumps({**r, "principal": member["uid"], "entities": [member]}))
    seeds["query"].append(read(os.path.join(BUNDLE, "sql", "mapping.json")))

    # http_request: each route of the default http.json with project 1 and 10, anonymous, with a
    # token or from a SPIFFE peer (`METHOD TARGET`, header lines, `peer ID`).
    http = json.loads(read(os.path.join(BUNDLE, "http.json")))
    for route in http["routes"]:
        methods = route["method"] if isinstance(route["method"], list) else [route["method"]]
        for project in ("1", "10"):
            path = route["path"].replace("{id}", project)
            path = path.replace("{*file_path}", "lib%2Fa.rb/raw").replace("{*branch}", "main")
            path = path.replace("{issue_iid}", "3").replace("{package_id}", "4")
            for method in methods:
                seeds["http_request"].append(f"{method} {path}?ref=main\nx-request-id: r1")
                seeds["http_request"].append(f"{method} {path}\nauthorization: Bearer {tokens_[0]}")
                seeds["http_request"].append(f"{method} {path}\npeer spiffe://gitlab.example.com/gitaly-client")

    # authzen: the decision tests' requests as AuthZEN bodies (a selector byte: 0 evaluation,
    # 1 evaluations, 2 resource search), a batch of each semantic, and searches with candidates.
    for r in map(json.loads, requests[:200]):
        if "principal" not in r or not isinstance(r.get("resource"), dict) or "id" not in r["resource"]:
            continue
        body = {"subject": r["principal"], "action": {"name": r["action"]["id"]},
                "resource": r["resource"], "context": r.get("context", {})}
        seeds["authzen"].append(b"\x00" + json.dumps(body).encode())
        for semantic in ("execute_all", "deny_on_first_deny", "permit_on_first_permit"):
            batch = {"subject": body["subject"], "context": body["context"], "options": {"evaluations_semantic": semantic},
                     "evaluations": [{"action": {"name": a}, "resource": body["resource"]}
                                     for a in ("read_project", "push_code", "remove_project")]}
            seeds["authzen"].append(b"\x01" + json.dumps(batch).encode())
        search = {**body, "resource": {"type": r["resource"]["type"]}, "resources": ["1", "3", "10", {"id": "6"}]}
        seeds["authzen"].append(b"\x02" + json.dumps(search).encode())

    # bundle_archive: the default bundle as a gzip-compressed tar (selector 0), edits to its
    # signed archive (1: offset and XOR byte), and OCI manifests (2), one an Arbiter bundle's.
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        for path, contents in default_bundle:
            data = contents.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    seeds["bundle_archive"].append(b"\x00" + gzip.compress(tar_bytes.getvalue(), mtime=0))
    seeds["bundle_archive"] += [b"\x01", b"\x01" + (4).to_bytes(4, "little") + b"\x01",
                                b"\x01" + (600).to_bytes(4, "little") + b"\x20"]
    layer = {"mediaType": "application/vnd.arbiter.bundle.layer.v1.tar+gzip", "size": 10,
             "digest": "sha256:" + "a" * 64, "annotations": {"org.opencontainers.image.title": "bundle.tar.gz"}}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "artifactType": "application/vnd.arbiter.bundle.v1",
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
                           "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
                "layers": [layer]}
    seeds["bundle_archive"].append(b"\x02" + json.dumps(manifest).encode())
    seeds["bundle_archive"].append(b"\x02" + json.dumps({**manifest, "layers": [layer, layer]}).encode())

    for target, items in seeds.items():
        folder = os.path.join(out, target)
        os.makedirs(folder, exist_ok=True)
        for item in items:
            data = item if isinstance(item, bytes) else item.encode()
            with open(os.path.join(folder, hashlib.sha1(data).hexdigest()), "wb") as f:
                f.write(data)
        print(f"{target}: {len(items)} seeds in {folder}")


if __name__ == "__main__":
    main()
