"""Checked by `mypy --strict` against the installed stubs (not collected by pytest)."""

from typing import Union

import arbiter


def allowed(engine: arbiter.Engine, user: str) -> bool:
    decision: arbiter.Decision = engine.authorize(
        principal={"type": "Gitlab::User", "id": user},
        action={"type": "Gitlab::Action", "id": "push_code"},
        resource={"type": "Gitlab::Project", "id": "10"},
        context={"admin_mode": False},
    )
    reasons: list[str] = decision.reasons
    for error in decision.errors:
        kind: str = error.kind
        policy: Union[str, None] = error.policy
        del kind, policy
    return decision.allowed and bool(reasons)


def load() -> arbiter.Engine:
    try:
        return arbiter.Engine.from_bundle_dir("policies/gitlab")
    except arbiter.PolicyParseError as e:
        code: int = e.code
        raise SystemExit(code) from e


def log_decisions(engine: arbiter.Engine, lines: list[str]) -> None:
    engine.set_decision_log(lines.append, sample_rate=0.1, max_events_per_second=100)
    engine.clear_decision_log()


def all_allowed(engine: arbiter.Engine, projects: list[str]) -> bool:
    requests = [
        {"principal": {"type": "Gitlab::User", "id": "alice"}, "action": {"type": "Gitlab::Action", "id": "read_project"},
         "resource": {"type": "Gitlab::Project", "id": p}, "context": {"admin_mode": False}}
        for p in projects
    ]
    answers: list[Union[arbiter.Decision, arbiter.ArbiterError]] = engine.authorize_many(requests)
    return all(answers) and all(engine.authorize_many(tuple(requests)))


def refreshed_engine(source: str, public_key: str) -> tuple[arbiter.Engine, str]:
    refresher = arbiter.Refresher(source, public_keys=[public_key], cache_dir="/var/cache/arbiter", interval=30.0)
    engine = refresher.start()
    return engine, refresher.refresh_if_due(engine)["refreshed"]
