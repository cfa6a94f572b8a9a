import pathlib

import pytest

import arbiter

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "policies" / "gitlab"


@pytest.fixture(scope="session")
def engine():
    return arbiter.Engine.from_bundle_dir(BUNDLE)


def user_request(user, action, project, **extra):
    """A check request. In entities.json, alice is a Developer of project 10, bob (blocked) too,
    and eve a Reporter; no one is a member of project 3."""
    request = {
        "principal": {"type": "Gitlab::User", "id": user},
        "action": {"type": "Gitlab::Action", "id": action},
        "resource": {"type": "Gitlab::Project", "id": project},
        "context": {"admin_mode": False},
    }
    request.update(extra)
    return request
