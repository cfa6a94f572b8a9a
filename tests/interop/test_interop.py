"""Interop with independent implementations, in both directions: tokens minted by PyJWT and
pymacaroons verify in Arbiter (through the `arbiter` CLI), and Arbiter's verify in them."""

import json
import os
import pathlib
import subprocess
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from pymacaroons import MACAROON_V1, MACAROON_V2, Macaroon, Verifier
from pymacaroons.serializers import JsonSerializer

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARBITER = os.environ.get("ARBITER_BIN", str(ROOT / "target" / "release" / "arbiter"))
KEYS = ROOT / "core" / "tests" / "fixtures" / "keys"
MACAROON_KEY = (KEYS / "macaroon.key").read_bytes()


def arbiter(*args, stdin=None, env=None):
    return subprocess.run([ARBITER, *args], input=stdin, capture_output=True, text=True, env=env)


def private_key(name):
    return serialization.load_pem_private_key((KEYS / name).read_bytes(), password=None)


def jwks(*specs):
    out = arbiter("token", "jwks", *sum((["--key", s] for s in specs), []))
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A bundle trusting the test keys as `https://issuer.example` and a macaroon root key."""
    root = tmp_path_factory.mktemp("bundle")
    (root / "keys").mkdir()
    (root / "keys" / "jwks.json").write_text(
        jwks(f"rs:RS256:{KEYS / 'rsa.pem'}", f"ps:PS256:{KEYS / 'rsa2.pem'}", f"es:ES256:{KEYS / 'ec.pem'}", f"ed:EdDSA:{KEYS / 'ed.pem'}")
    )
    (root / "keys" / "hs.b64").write_text((KEYS / "hs256.b64").read_text())
    (root / "keys" / "root.key").write_bytes(MACAROON_KEY)
    (root / "p.cedar").write_text('@id("readers") permit (principal is User, action == Action::"read", resource);\n')
    (root / "tokens.json").write_text(json.dumps({
        "jwt": {"issuers": [
            {"issuer": "https://issuer.example", "audiences": ["api"], "algorithms": ["RS256", "PS256", "ES256", "EdDSA"],
             "jwks_file": "keys/jwks.json", "principal": {"type": "User"}},
            {"issuer": "https://hmac.example", "algorithms": ["HS256"], "hmac_secret_file": "keys/hs.b64",
             "secret_encoding": "base64", "principal": {"type": "User"}},
        ]},
        "macaroon": {"root_keys": [{"id": "k1", "secret_file": "keys/root.key"}],
                     "principal": {"type": "User", "id_caveat": "user"}},
    }))
    return str(root)


def verify(bundle, token):
    out = arbiter("token", "verify", "--bundle", bundle, "--token", token)
    return out.returncode, json.loads(out.stdout)


CLAIMS = {"iss": "https://issuer.example", "aud": "api", "sub": "42"}


@pytest.mark.parametrize("alg,kid,key", [
    ("RS256", "rs", "rsa.pem"), ("PS256", "ps", "rsa2.pem"), ("ES256", "es", "ec.pem"), ("EdDSA", "ed", "ed.pem"),
])
def test_pyjwt_tokens_verify_in_arbiter(bundle, alg, kid, key):
    token = jwt.encode({**CLAIMS, "exp": int(time.time()) + 60}, private_key(key), algorithm=alg, headers={"kid": kid})
    code, answer = verify(bundle, token)
    assert code == 0, answer
    assert answer["principal"] == {"type": "User", "id": "42"}
    # Signed by the right key under the wrong kid: refused.
    wrong_kid = jwt.encode({**CLAIMS, "exp": int(time.time()) + 60}, private_key(key), algorithm=alg, headers={"kid": "rs" if kid != "rs" else "es"})
    assert verify(bundle, wrong_kid)[0] == 1


def test_pyjwt_hmac_and_expired_tokens(bundle):
    secret = __import__("base64").b64decode((KEYS / "hs256.b64").read_text().strip())
    good = jwt.encode({"iss": "https://hmac.example", "sub": "7", "exp": int(time.time()) + 60}, secret, algorithm="HS256")
    assert verify(bundle, good)[0] == 0
    expired = jwt.encode({**CLAIMS, "exp": int(time.time()) - 10}, private_key("rsa.pem"), algorithm="RS256", headers={"kid": "rs"})
    code, answer = verify(bundle, expired)
    assert (code, answer["error"]["kind"]) == (1, "expired")


def test_arbiter_jwts_verify_in_pyjwt():
    out = arbiter("token", "mint", "jwt", "--issuer", "https://issuer.example", "--key", f"es:ES256:{KEYS / 'ec.pem'}",
                  "--subject", "42", "--audience", "api", "--claims", '{"scope": "read"}')
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    public = private_key("ec.pem").public_key()
    claims = jwt.decode(token, public, algorithms=["ES256"], audience="api", issuer="https://issuer.example")
    assert (claims["sub"], claims["scope"]) == ("42", "read")
    assert jwt.get_unverified_header(token)["kid"] == "es"
    # And the JWKS Arbiter exports is one PyJWT reads.
    key = jwt.PyJWKSet.from_json(jwks(f"es:ES256:{KEYS / 'ec.pem'}"))["es"]
    assert jwt.decode(token, key.key, algorithms=["ES256"], audience="api")["sub"] == "42"


def test_default_bundle_decides_a_pyjwt_ci_job_token_through_check():
    env = {**os.environ, "ARBITER_GITLAB_JWKS": jwks(f"gitlab-ci:RS256:{KEYS / 'rsa.pem'}")}
    claims = {"iss": "gitlab.example.com", "aud": "gitlab-authz-token", "sub": "gid://gitlab/Ci::Build/100",
              "exp": int(time.time()) + 300, "version": "0.1.0"}
    token = "glcbt-" + jwt.encode(claims, private_key("rsa.pem"), algorithm="RS256", headers={"kid": "gitlab-ci"})

    # Job 100 runs in project 3 for alice, made a Developer of it here.
    member = next(e for e in json.loads(arbiter("entities").stdout) if e["uid"] == {"type": "Gitlab::Project", "id": "3"})
    member["tags"] = {"alice": {"access_level": 30}}

    def check(action, project):
        request = {"action": {"type": "Gitlab::Action", "id": action}, "resource": {"type": "Gitlab::Project", "id": project},
                   "context": {"admin_mode": False}, "entities": [member], "token": token}
        out = arbiter("check", stdin=json.dumps(request), env=env)
        return out.returncode, json.loads(out.stdout)

    assert check("download_code", "3") == (0, {"decision": "allow", "reasons": ["role-reporter"], "errors": []})
    code, decision = check("push_code", "3")
    assert (code, decision["reasons"]) == (1, ["job-token-allowed-actions"])


@pytest.mark.parametrize("version,serializer", [(MACAROON_V1, None), (MACAROON_V2, None), (MACAROON_V2, JsonSerializer())])
def test_pymacaroons_verify_in_arbiter(bundle, version, serializer):
    m = Macaroon(location="https://gitlab.example.com", identifier="user = 42; py-1", key=MACAROON_KEY, version=version)
    m.add_first_party_caveat("user = 42")
    m.add_first_party_caveat("action = read")
    token = m.serialize(serializer=serializer) if serializer else m.serialize()
    code, answer = verify(bundle, token)
    assert code == 0, answer
    assert answer["principal"]["id"] == "42"


def test_pymacaroons_third_party_caveats_and_discharges_verify_in_arbiter(bundle):
    root = Macaroon(location="https://gitlab.example.com", identifier="user = 42; py-2", key=MACAROON_KEY, version=MACAROON_V2)
    root.add_first_party_caveat("user = 42")
    root.add_third_party_caveat("https://auth.example", "auth service key", "2fa-done")
    discharge = Macaroon(location="https://auth.example", identifier="2fa-done", key="auth service key", version=MACAROON_V2)
    discharge.add_first_party_caveat("action = read")
    bound = root.prepare_for_request(discharge)
    code, answer = verify(bundle, json.dumps([root.serialize(), bound.serialize()]))
    assert code == 0, answer
    assert answer["claims"]["caveats"] == ["user = 42", "action = read"]
    code, answer = verify(bundle, json.dumps([root.serialize(), discharge.serialize()]))
    assert (code, answer["error"]["kind"]) == (1, "bad_signature")


@pytest.mark.parametrize("fmt", ["v1", "v2", "v2j"])
def test_arbiter_macaroons_verify_in_pymacaroons(tmp_path, fmt):
    key_file = tmp_path / "root.key"
    key_file.write_bytes(MACAROON_KEY)
    out = arbiter("token", "mint", "macaroon", "--root-key-file", str(key_file), "--identifier", "user = 42; rs-1",
                  "--location", "https://gitlab.example.com", "--caveat", "user = 42", "--caveat", "action = read", "--format", fmt)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    m = Macaroon.deserialize(token, serializer=JsonSerializer()) if fmt == "v2j" else Macaroon.deserialize(token)
    verifier = Verifier()
    verifier.satisfy_exact("user = 42")
    verifier.satisfy_exact("action = read")
    assert verifier.verify(m, MACAROON_KEY)
    wrong = Verifier()
    wrong.satisfy_exact("user = 42")
    with pytest.raises(Exception):
        wrong.verify(m, MACAROON_KEY)


@pytest.mark.parametrize("identifier,refused", [("rs-2", "missing_claim"), ("user = 42; rs-3", "caveat_not_satisfied")])
def test_a_pymacaroons_holder_cannot_choose_the_principal(bundle, tmp_path, identifier, refused):
    """Anyone holding a macaroon may append caveats without the key: `user = root` appended by
    the holder (to the root or to a discharge) never names the principal, it only narrows."""
    key_file = tmp_path / "root.key"
    key_file.write_bytes(MACAROON_KEY)
    out = arbiter("token", "mint", "macaroon", "--root-key-file", str(key_file), "--identifier", identifier,
                  "--location", "https://gitlab.example.com")
    assert out.returncode == 0, out.stderr
    attenuated = Macaroon.deserialize(out.stdout.strip())
    attenuated.add_first_party_caveat("user = root")
    code, answer = verify(bundle, attenuated.serialize())
    assert (code, answer["error"]["kind"]) == (1, refused), answer

    root = Macaroon.deserialize(out.stdout.strip())
    root.add_third_party_caveat("https://auth.example", "auth service key", "2fa-done")
    discharge = Macaroon(location="https://auth.example", identifier="2fa-done", key="auth service key", version=MACAROON_V2)
    discharge.add_first_party_caveat("user = root")
    bound = root.prepare_for_request(discharge)
    code, answer = verify(bundle, json.dumps([root.serialize(), bound.serialize()]))
    assert (code, answer["error"]["kind"]) == (1, refused), answer
