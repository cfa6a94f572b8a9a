"""Arbiter: embeddable Cedar policy decisions and token verification.

    engine = arbiter.Engine.gitlab_default()
    decision = engine.authorize(
        principal={"type": "Gitlab::User", "id": "alice"},
        action={"type": "Gitlab::Action", "id": "push_code"},
        resource={"type": "Gitlab::Project", "id": "10"},
        context={"admin_mode": False},
    )
    decision.allowed, decision.reasons, decision.errors
"""

from ._arbiter import (
    ERROR_KINDS,
    AbilitiesError,
    ArbiterError,
    Decision,
    DecisionError,
    Engine,
    EntitiesError,
    HttpError,
    InternalError,
    InvalidArgumentError,
    InvalidContextError,
    InvalidEntitiesError,
    InvalidRequestError,
    InvalidUtf8Error,
    IoError,
    LinksError,
    MalformedRequestError,
    ManifestError,
    NullArgumentError,
    PolicyParseError,
    PolicyValidationError,
    Refresher,
    SchemaError,
    SignatureError,
    SqlMappingError,
    TokensError,
    UntranslatableError,
    __version__,
)



def _allows_nothing(self: ArbiterError) -> bool:
    """An error in place of a decision (``Engine.authorize_many``) is falsy, like a deny."""
    return False


ArbiterError.__bool__ = _allows_nothing  # type: ignore[method-assign]

__all__ = [
    "ERROR_KINDS",
    "AbilitiesError",
    "ArbiterError",
    "Decision",
    "DecisionError",
    "Engine",
    "EntitiesError",
    "HttpError",
    "InternalError",
    "InvalidArgumentError",
    "InvalidContextError",
    "InvalidEntitiesError",
    "InvalidRequestError",
    "InvalidUtf8Error",
    "IoError",
    "LinksError",
    "MalformedRequestError",
    "ManifestError",
    "NullArgumentError",
    "PolicyParseError",
    "PolicyValidationError",
    "Refresher",
    "SchemaError",
    "SignatureError",
    "SqlMappingError",
    "TokensError",
    "UntranslatableError",
    "__version__",
]
