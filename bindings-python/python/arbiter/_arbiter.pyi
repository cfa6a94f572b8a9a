"""Type stubs of Arbiter's extension module."""

from os import PathLike
from typing import Any, Callable, Literal, Optional, Sequence, Union

__version__: str

EntityRef = dict[str, str]
"""An entity reference: ``{"type": "Gitlab::User", "id": "42"}``."""
Dicts = Union[list[dict[str, Any]], tuple[dict[str, Any], ...]]
"""A list or tuple of dicts: request entities, or the requests of ``authorize_many``."""

class ArbiterError(Exception):
    """An error of an Arbiter call; ``code`` and ``kind`` say which."""

    code: int
    """Stable numeric code (1-3 misuse of the C ABI, 100-108 bundle loading, 200-203 requests,
    900 internal); ``ERROR_KINDS`` lists them all."""
    kind: str
    """Stable snake_case kind, e.g. ``"policy_parse"`` or ``"invalid_request"``."""
    message: str
    """What went wrong, on one line."""
    def __bool__(self) -> bool:
        """Always false: an error returned in place of a decision allows nothing."""

ERROR_KINDS: tuple[tuple[int, str, str], ...]
"""Core's error table: ``(code, kind, class name)`` for every error class below."""

class NullArgumentError(ArbiterError):
    """A required pointer argument was NULL (kind ``null_argument``, code 1; C only)."""

class InvalidUtf8Error(ArbiterError):
    """A string argument is not valid UTF-8 (kind ``invalid_utf8``, code 2; C only)."""

class InvalidArgumentError(ArbiterError):
    """An argument is out of its range (kind ``invalid_argument``, code 3; C and Go: Python
    raises ``ValueError`` for out-of-range options)."""

class IoError(ArbiterError):
    """A bundle file or directory could not be read (kind ``io``, code 100)."""

class ManifestError(ArbiterError):
    """``manifest.json`` is invalid (kind ``manifest``, code 101)."""

class PolicyParseError(ArbiterError):
    """A policy does not parse (kind ``policy_parse``, code 102)."""

class PolicyValidationError(ArbiterError):
    """Policies do not validate against the schema (kind ``policy_validation``, code 103)."""

class SchemaError(ArbiterError):
    """The schema is invalid (kind ``schema``, code 104)."""

class EntitiesError(ArbiterError):
    """``entities.json`` is invalid (kind ``entities``, code 105)."""

class LinksError(ArbiterError):
    """``links.json`` is invalid (kind ``links``, code 106)."""

class TokensError(ArbiterError):
    """``tokens.json`` is invalid (kind ``tokens``, code 107)."""

class SignatureError(ArbiterError):
    """The bundle's signature is missing, not trusted, or does not match its files (kind
    ``signature``, code 108)."""

class SqlMappingError(ArbiterError):
    """``sql/mapping.json`` is invalid (kind ``sql_mapping``, code 109)."""

class AbilitiesError(ArbiterError):
    """``abilities.json`` is invalid (kind ``abilities``, code 110)."""

class HttpError(ArbiterError):
    """``http.json`` is invalid (kind ``http``, code 111)."""

class MalformedRequestError(ArbiterError):
    """The request is malformed: bad JSON, a key given twice, over a limit (kind
    ``malformed_request``, code 200)."""

class InvalidRequestError(ArbiterError):
    """The request does not fit the schema, e.g. an undeclared action (kind ``invalid_request``,
    code 201)."""

class InvalidContextError(ArbiterError):
    """The context does not fit the schema (kind ``invalid_context``, code 202)."""

class InvalidEntitiesError(ArbiterError):
    """A request entity is invalid (kind ``invalid_entities``, code 203)."""

class UntranslatableError(ArbiterError):
    """A query the bundle's SQL mapping cannot express exactly (kind ``untranslatable``, code
    204)."""

class InternalError(ArbiterError):
    """Arbiter failed inside (a contained panic); nothing was allowed (kind ``internal``, code
    900)."""

class DecisionError:
    """An error met while deciding: a policy that failed to evaluate (``policy`` set), or a
    token that was refused (``kind`` is one of the token error kinds)."""

    @property
    def kind(self) -> str:
        """Snake_case kind, e.g. ``"policy_evaluation"`` or ``"expired"``."""
    @property
    def policy(self) -> Optional[str]:
        """Id of the policy whose evaluation failed, else ``None``."""
    @property
    def message(self) -> str:
        """What went wrong, on one line; never the token's content."""
    def __eq__(self, other: object) -> bool:
        """Equal when kind, policy and message are equal."""
    def __hash__(self) -> int:
        """Hashes alike when equal."""

class Decision:
    """The answer to a request: ``allowed``, ``reasons`` and ``errors``. Equal decisions
    compare equal and hash alike."""

    @property
    def allowed(self) -> bool:
        """True for allow, false for deny."""
    @property
    def reasons(self) -> list[str]:
        """Ids of the determining policies."""
    @property
    def errors(self) -> list[DecisionError]:
        """Every error met while deciding (policies skipped, tokens refused)."""
    def __bool__(self) -> bool:
        """The same as ``allowed``."""
    def __eq__(self, other: object) -> bool:
        """Equal when allowed, reasons and errors are equal."""
    def __hash__(self) -> int:
        """Hashes alike when equal."""

class Engine:
    """Decides requests against one bundle at a time. Safe to share between threads, reloads
    included; a forked child keeps a working copy."""

    @staticmethod
    def from_bundle_dir(path: Union[str, PathLike[str]]) -> Engine:
        """Loads the bundle in directory ``path``."""
    @staticmethod
    def gitlab_default() -> Engine:
        """Loads the default GitLab bundle embedded in the library."""
    @staticmethod
    def from_files(files: dict[str, str | bytes]) -> Engine:
        """Loads a bundle held in memory: relative path -> contents."""
    @staticmethod
    def from_signed_bundle_dir(path: Union[str, PathLike[str]], public_keys: Sequence[str]) -> Engine:
        """Loads the signed bundle in directory ``path``; ``public_keys`` are the trusted signing
        keys (SPKI PEM). The engine then loads only bundles these keys signed, on every reload
        too."""
    def reload_from_dir(self, path: Union[str, PathLike[str]]) -> None:
        """Replaces the bundle with the one in ``path``; on failure the old one keeps serving."""
    def reload_from_files(self, files: dict[str, str | bytes]) -> None:
        """Replaces the bundle with one held in memory; on failure the old one keeps serving."""
    def authorize_json(self, request: str) -> str:
        """Decides one request given as contract JSON; returns the decision JSON."""
    def query(
        self,
        *,
        principal: EntityRef,
        action: EntityRef,
        resource_type: str,
        context: Optional[dict[str, Any]] = None,
        entities: Optional[Dicts] = None,
        dialect: Literal["postgres", "sqlite"] = "postgres",
    ) -> dict[str, Any]:
        """Which resources of ``resource_type`` may the principal act on, as SQL for the bundle's
        tables: ``{"kind": "all" | "none" | "where", "sql", "params"}``, the clause written for
        ``SELECT <table>.id FROM <table>``. Raises ``UntranslatableError`` where the bundle's
        SQL mapping cannot express the answer exactly."""
    def query_json(self, request: str, dialect: str) -> str:
        """A list query given as request JSON (``resource`` a ``type`` and no ``id``), answered
        as ``{"kind", "sql", "params"}`` JSON."""
    def authorize_json_batch(self, requests: str) -> str:
        """Decides a JSON array of requests; returns a JSON array with a decision, or
        ``{"error": {...}}``, per request."""
    def authorize(
        self,
        *,
        principal: Optional[EntityRef] = None,
        action: EntityRef,
        resource: EntityRef,
        context: Optional[dict[str, Any]] = None,
        entities: Optional[Dicts] = None,
        token: Optional[str] = None,
        request_id: Optional[str] = None,
    ) -> Decision:
        """Decides one request. ``principal`` may be left out when a ``token`` is given;
        ``entities`` are Cedar entity dicts layered over the bundle's for this request only;
        ``request_id``, the host's id for the request, goes into the decision log. Raises an
        ``ArbiterError`` subclass when the request cannot be decided."""
    def authorize_many(self, requests: Dicts) -> list[Union[Decision, ArbiterError]]:
        """Decides many requests (dicts with the keywords of ``authorize``) in one call, against
        one bundle version, without the GIL. Returns, in order, a ``Decision`` per request, or
        the ``ArbiterError`` of a request that could not be decided (returned, not raised;
        falsy, like a deny)."""
    def verify_token(self, token: str) -> dict[str, Any]:
        """Verifies a token against the bundle's ``tokens.json`` without deciding anything:
        ``{"valid": True, "kind", "principal", "claims"}`` or ``{"valid": False, "error":
        {...}}``."""
    def entities_json(self) -> str:
        """The engine's entities (static ones and the schema's actions) as Cedar entity JSON."""
    def set_candidate_from_dir(self, path: Union[str, PathLike[str]]) -> None:
        """Sets a candidate bundle beside the live one: decisions still come from the live
        bundle, and the candidate decides each request too, for comparison
        (``shadow_report``). Replaces any earlier candidate; on failure nothing changes."""
    def set_candidate_from_files(self, files: dict[str, str | bytes]) -> None:
        """Sets a candidate bundle held in memory: relative path -> contents."""
    def clear_candidate(self) -> None:
        """Drops the candidate bundle."""
    def shadow_report(self) -> dict[str, Any]:
        """How the candidate's decisions compared with the live bundle's: ``candidate``,
        ``agreements``, ``disagreements`` and the ``recent`` disagreements."""
    def explain(self, request: str) -> dict[str, Any]:
        """Decides one request (contract JSON) and explains it: the decision's fields plus
        ``policies``, each with ``id``, ``effect``, ``outcome``, ``condition`` and ``error``."""
    def explain_text(self, request: str) -> str:
        """The same explanation as text for a person."""
    def set_decision_log(
        self,
        sink: Callable[[str], object],
        *,
        sample_rate: float = 1.0,
        max_events_per_second: Optional[int] = None,
    ) -> None:
        """Passes every decision (of every call but ``explain``) to ``sink`` as one JSON line
        (sampled, rate limited, sensitive attributes masked, never a token), on the calling
        thread once the deciding call is done. ``sample_rate`` (0.0 to 1.0) logs that
        fraction, decisions with the same ``request_id`` alike; ``max_events_per_second`` caps
        the rate; out-of-range options raise ``ValueError``. Replaces any earlier sink."""
    def clear_decision_log(self) -> None:
        """Stops logging decisions."""
    def export_decision_log_otlp(
        self,
        *,
        endpoint: str,
        encoding: Literal["protobuf", "json"] = "protobuf",
        max_queue: Optional[int] = None,
        max_batch: Optional[int] = None,
        flush_interval: Optional[float] = None,
        timeout: Optional[float] = None,
        service_name: Optional[str] = None,
        ca_file: Union[str, PathLike[str], None] = None,
        sample_rate: Optional[float] = None,
        max_events_per_second: Optional[int] = None,
    ) -> None:
        """Sends every decision as an OpenTelemetry log record to the OTLP/HTTP logs
        ``endpoint``, from a bounded queue on an exporter thread of its own, replacing any other
        decision log; a decision never waits for the receiver. A forking server calls it in
        each worker, after the fork."""
    def otlp_stats(self) -> Optional[dict[str, int]]:
        """``{"exported", "dropped", "failed_exports"}`` of the OpenTelemetry exporter, or None
        when the decision log is not one."""
    def metrics(self) -> dict[str, Any]:
        """What the engine has counted since it was created: decisions by action, request
        errors and token failures by kind, policy errors, a latency histogram, the bundle,
        the decision log's outcomes."""
    def metrics_prometheus(self) -> str:
        """The metrics in the Prometheus text exposition format."""

class Refresher:
    """Fetches an engine's bundle from a source (a directory, an ``https://`` URL serving a
    bundle archive, or ``oci://HOST/REPO[:TAG|@DIGEST]``) and refreshes it when asked: there is
    no background thread. A remote source needs ``public_keys`` (SPKI PEM). Calls take turns;
    fetches release the GIL."""

    def __init__(
        self,
        source: str,
        *,
        public_keys: Sequence[str] = ...,
        cache_dir: Union[str, PathLike[str], None] = None,
        interval: Optional[float] = None,
        max_backoff: Optional[float] = None,
        timeout: Optional[float] = None,
        max_bytes: Optional[int] = None,
        plain_http: bool = False,
        ca_file: Union[str, PathLike[str], None] = None,
        allow_rollback: bool = False,
    ) -> None: ...
    def start(self) -> Engine:
        """Fetches the bundle and builds an engine from it, or from the cache when the source
        fails; the engine's ``metrics()["source"]`` reports the source's status."""
    def refresh(self, engine: Engine) -> dict[str, str]:
        """Fetches now: ``{"refreshed": "updated", "digest": ...}`` or ``{"refreshed":
        "unchanged"}``; on an error the engine keeps its bundle."""
    def refresh_if_due(self, engine: Engine) -> dict[str, str]:
        """``refresh`` when the schedule says one is due; ``{"refreshed": "not_due"}``
        otherwise."""
