//! Ruby bindings of Arbiter (magnus), linking the core directly: converts values and errors,
//! nothing more. Bundle loads, reloads, batches and token checks run without the GVL; a single
//! decision is shorter than a GVL round trip and keeps it (unless it carries a token). No
//! wrapped object holds a Ruby value, so the garbage collector (stress, compaction) never needs
//! to know about them (a decision log's block is an instance variable of the engine), and
//! nothing here starts a thread, so a fork leaves a working engine. Decision log events wait on
//! the deciding thread (`hold_event`) until the call has the GVL again, and then go to the block.

use std::ffi::c_void;
use std::path::PathBuf;

use arbiter_core::decision_log::{hold_event, take_held_events};
use arbiter_core::ffi::{self, guarded, RequestText, Span, SpannedRequest};
use arbiter_core::{
    BundleFile, CallError, Decision as CoreDecision, DecisionErrorKind, DecisionLogOptions, Effect,
    ErrorKind, RequestParts, TokenReport,
};
use magnus::r_hash::ForEach;
use magnus::rb_sys::AsRawValue;
use magnus::typed_data::{self, Obj};
use magnus::value::{Lazy, LazyId, Qfalse, Qtrue, ReprValue};
use magnus::{
    function, method, prelude::*, Error, ExceptionClass, Float, Integer, RArray, RHash, RModule,
    RObject, RString, Ruby, Symbol, TryConvert, Value,
};
use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

/// The `Arbiter::Error` subclass of a kind of core's error table: `PolicyParseError` for
/// `policy_parse`. Every kind has one, defined at load from the table.
fn error_class_name(kind: ErrorKind) -> String {
    format!("{}Error", kind.name())
}

static ARBITER: Lazy<RModule> = Lazy::new(|ruby| {
    ruby.class_object()
        .const_get("Arbiter")
        .expect("Arbiter is defined at load")
});

/// An error before it becomes a Ruby exception.
type Failure = CallError;

/// Raising a [`Failure`] as the `Arbiter::Error` subclass for its kind.
trait RubyError {
    fn exception(&self, ruby: &Ruby) -> Result<Value, Error>;
    fn into_error(self, ruby: &Ruby) -> Error;
}

impl RubyError for Failure {
    /// The exception object: the class for the kind, with `@code` and `@kind` set.
    fn exception(&self, ruby: &Ruby) -> Result<Value, Error> {
        let class: ExceptionClass = ruby
            .get_inner(&ARBITER)
            .const_get(error_class_name(self.kind))?;
        let exception = class.new_instance((self.message.as_str(),))?;
        let object = RObject::from_value(exception.as_value()).expect("exceptions are objects");
        object.ivar_set("@code", self.code())?;
        object.ivar_set("@kind", self.kind.as_str())?;
        Ok(exception.as_value())
    }

    fn into_error(self, ruby: &Ruby) -> Error {
        match self.exception(ruby) {
            Ok(exception) => Error::from(
                magnus::Exception::from_value(exception).expect("an exception instance"),
            ),
            Err(e) => e,
        }
    }
}

/// [`guarded`], a failure raised as the `Arbiter::Error` for its kind.
fn guard<T>(ruby: &Ruby, f: impl FnOnce() -> Result<T, Failure>) -> Result<T, Error> {
    guarded(f).map_err(|e| e.into_error(ruby))
}

/// Runs `f` without the GVL, so other Ruby threads run meanwhile. `f` must not touch Ruby
/// objects; a panic in it becomes an `InternalError`. An interrupt Ruby finds pending on the
/// way in or out (`Thread#raise`, `Thread#kill`, a signal) is the answer instead, raised once
/// the Rust frames have returned rather than across them.
fn without_gvl<T, F>(ruby: &Ruby, f: F) -> Result<T, Error>
where
    T: Send,
    F: FnOnce() -> Result<T, Failure> + Send,
{
    struct Call<F, T> {
        f: Option<F>,
        result: Option<Result<T, Failure>>,
    }
    unsafe extern "C" fn trampoline<F, T>(data: *mut c_void) -> *mut c_void
    where
        F: FnOnce() -> Result<T, Failure>,
    {
        // SAFETY: `data` is the `Call` below, alive and not otherwise borrowed during the call.
        let call = unsafe { &mut *data.cast::<Call<F, T>>() };
        if let Some(f) = call.f.take() {
            call.result = Some(guarded(f));
        }
        std::ptr::null_mut()
    }
    let mut call = Call {
        f: Some(f),
        result: None,
    };
    let data = std::ptr::addr_of_mut!(call).cast();
    let interrupted = magnus::rb_sys::protect(|| {
        // SAFETY: the trampoline matches the callback type; no unblocking function is given,
        // so Ruby waits for the call to finish (it is bounded work, not I/O).
        unsafe {
            rb_sys::rb_thread_call_without_gvl(
                Some(trampoline::<F, T>),
                data,
                None,
                std::ptr::null_mut(),
            );
        }
        ruby.qnil().as_raw()
    });
    interrupted?;
    call.result
        .unwrap_or_else(|| Err(Failure::internal("the call did not run")))
        .map_err(|e| e.into_error(ruby))
}

/// An error met while deciding: a policy that failed to evaluate (`policy` set), or a token
/// that was refused.
#[magnus::wrap(
    class = "Arbiter::DecisionError",
    free_immediately,
    size,
    frozen_shareable
)]
#[derive(Clone, PartialEq, Eq, Hash)]
struct DecisionError {
    kind: DecisionErrorKind,
    policy: Option<String>,
    message: String,
}

impl DecisionError {
    fn kind(&self) -> &'static str {
        self.kind.as_str()
    }

    fn policy(&self) -> Option<String> {
        self.policy.clone()
    }

    fn message(&self) -> String {
        self.message.clone()
    }

    fn inspect(ruby: &Ruby, rb_self: &Self) -> String {
        let inspect = |value: Value| value.inspect();
        format!(
            "#<Arbiter::DecisionError kind={} policy={} message={}>",
            inspect(ruby.into_value(rb_self.kind.as_str())),
            inspect(ruby.into_value(rb_self.policy.as_deref())),
            inspect(ruby.into_value(rb_self.message.as_str()))
        )
    }

    /// `{kind:, policy:, message:}`, as the contract's decision JSON has it.
    fn to_h(ruby: &Ruby, rb_self: &Self) -> Result<RHash, Error> {
        let hash = ruby.hash_new();
        hash.aset(ruby.to_symbol("kind"), rb_self.kind.as_str())?;
        hash.aset(ruby.to_symbol("policy"), rb_self.policy.as_deref())?;
        hash.aset(ruby.to_symbol("message"), rb_self.message.as_str())?;
        Ok(hash)
    }
}

/// The answer to a request.
#[magnus::wrap(class = "Arbiter::Decision", free_immediately, size, frozen_shareable)]
#[derive(PartialEq, Eq, Hash)]
struct Decision {
    decision: Effect,
    reasons: Vec<String>,
    errors: Vec<DecisionError>,
}

impl From<CoreDecision> for Decision {
    fn from(d: CoreDecision) -> Self {
        Self {
            decision: d.decision,
            reasons: d.reasons,
            errors: d
                .errors
                .into_iter()
                .map(|e| DecisionError {
                    kind: e.kind,
                    policy: e.policy,
                    message: e.message,
                })
                .collect(),
        }
    }
}

/// How many distinct decisions of one `authorize_many` are looked for among those made.
const MAX_SHARED_DECISIONS: usize = 16;

impl Decision {
    /// A frozen Ruby Decision.
    fn object(ruby: &Ruby, decision: CoreDecision) -> Value {
        let object = ruby.obj_wrap(Decision::from(decision)).as_value();
        object.freeze();
        object
    }

    fn allowed(&self) -> bool {
        self.decision == Effect::Allow
    }

    fn reasons(ruby: &Ruby, rb_self: &Self) -> RArray {
        ruby.ary_from_iter(rb_self.reasons.iter().map(String::as_str))
    }

    fn errors(ruby: &Ruby, rb_self: &Self) -> RArray {
        ruby.ary_from_iter(rb_self.errors.iter().cloned())
    }

    /// `{decision: "allow" | "deny", reasons:, errors: [{kind:, policy:, message:}]}`, the
    /// contract's decision JSON with Symbol keys.
    fn to_h(ruby: &Ruby, rb_self: &Self) -> Result<RHash, Error> {
        let errors = ruby.ary_new_capa(rb_self.errors.len());
        for error in &rb_self.errors {
            errors.push(DecisionError::to_h(ruby, error)?)?;
        }
        let hash = ruby.hash_new();
        hash.aset(ruby.to_symbol("decision"), rb_self.decision.as_str())?;
        hash.aset(ruby.to_symbol("reasons"), Decision::reasons(ruby, rb_self))?;
        hash.aset(ruby.to_symbol("errors"), errors)?;
        Ok(hash)
    }

    fn inspect(ruby: &Ruby, rb_self: &Self) -> String {
        format!(
            "#<Arbiter::Decision allowed={} reasons={} errors={}>",
            rb_self.allowed(),
            Decision::reasons(ruby, rb_self).inspect(),
            rb_self.errors.len()
        )
    }
}

/// Key names read from Ruby Hashes, with their interned Symbols: a Symbol key is recognized by
/// its id, without reading its name.
struct Keys<const N: usize> {
    names: [&'static str; N],
    ids: [LazyId; N],
}

macro_rules! keys {
    ($($name:literal),* $(,)?) => {
        Keys { names: [$($name),*], ids: [$(LazyId::new($name)),*] }
    };
}

/// The keywords of `authorize`.
static KEYWORDS: Keys<7> = keys!(
    "principal",
    "action",
    "resource",
    "context",
    "entities",
    "token",
    "request_id",
);

/// The keys of an entity reference.
static REFERENCE_KEYS: Keys<2> = keys!("type", "id");

/// A String (or an object that converts to one with `to_str`), copied into `text`.
fn push_string(text: &mut RequestText, value: Value) -> Option<Span> {
    with_string_text(value, |s| text.push(s))
}

/// A JSON-like Ruby value (see [`Json`]) written into `text` as JSON.
fn push_json(text: &mut RequestText, name: &str, value: Value) -> Result<Span, Failure> {
    let max_depth = text.max_json_depth();
    text.push_json(
        name,
        &Json {
            value,
            depth: 0,
            max_depth,
        },
    )
}

/// Reads the arguments of `authorize` (nil for a missing optional one) into `text`.
#[allow(clippy::too_many_arguments)]
fn read_request(
    text: &mut RequestText,
    principal: Value,
    action: Value,
    resource: Value,
    context: Value,
    entities: Value,
    token: Value,
    request_id: Value,
) -> Result<SpannedRequest, Failure> {
    let string = |text: &mut RequestText, name: &str, value: Value| {
        optional(value)
            .map(|v| {
                push_string(text, v).ok_or_else(|| {
                    Failure::malformed(format!("`{name}` must be a String of UTF-8 text"))
                })
            })
            .transpose()
    };
    Ok(SpannedRequest {
        principal: optional(principal)
            .map(|p| entity_ref(text, "principal", p))
            .transpose()?,
        action: entity_ref(text, "action", action)?,
        resource: entity_ref(text, "resource", resource)?,
        context: optional(context)
            .map(|c| push_json(text, "context", c))
            .transpose()?,
        entities: optional(entities)
            .map(|e| push_json(text, "entities", e))
            .transpose()?,
        token: string(text, "token", token)?,
        request_id: string(text, "request_id", request_id)?,
    })
}

/// Reads one request of `authorize_many`: a Hash with the keywords of `authorize`.
fn read_request_hash(text: &mut RequestText, request: Value) -> Result<SpannedRequest, Failure> {
    let hash = RHash::from_value(request).ok_or_else(|| {
        Failure::malformed("a request must be a Hash with the keywords of `authorize`")
    })?;
    let [principal, action, resource, context, entities, token, request_id] =
        slots(hash, &KEYWORDS).map_err(|wrong| {
            Failure::malformed(format!(
                "{wrong} in a request; expected {}",
                KEYWORDS.names.join(", ")
            ))
        })?;
    let nil = |v: Option<Value>| v.unwrap_or_else(|| Ruby::get_with(hash).qnil().as_value());
    read_request(
        text,
        nil(principal),
        nil(action),
        nil(resource),
        nil(context),
        nil(entities),
        nil(token),
        nil(request_id),
    )
}

fn optional(value: Value) -> Option<Value> {
    (!value.is_nil()).then_some(value)
}

/// The values of a Hash whose keys are among `keys` (as Symbols or Strings), in the order of
/// `keys`, read in one pass; an unknown key, or a key given both as a Symbol and a String, is
/// answered with what is wrong.
fn slots<const N: usize>(hash: RHash, keys: &Keys<N>) -> Result<[Option<Value>; N], String> {
    let mut values = [None; N];
    let mut wrong = None;
    let _ = hash.foreach(|key: Value, value: Value| {
        let slot = match Symbol::from_value(key).and_then(|s| s.as_static()) {
            Some(symbol) => keys.ids.iter().position(|id| *id == symbol),
            None => with_text(key, |name| keys.names.iter().position(|n| *n == name)).flatten(),
        };
        match slot {
            Some(i) if values[i].is_none() => {
                values[i] = Some(value);
                Ok(ForEach::Continue)
            }
            Some(i) => {
                let name = keys.names[i];
                wrong = Some(format!(
                    "key `{name}` given twice (as a Symbol and a String)"
                ));
                Ok(ForEach::Stop)
            }
            None => {
                wrong = Some(format!("unknown key {}", key.inspect()));
                Ok(ForEach::Stop)
            }
        }
    });
    match wrong {
        Some(wrong) => Err(wrong),
        None => Ok(values),
    }
}

/// Calls `f` with the text of a Symbol or String: a UTF-8 (or ASCII) String as it is, a binary
/// one (as Rack bodies and IO reads are) if its bytes are UTF-8, one in another encoding
/// converted to UTF-8. `None` for anything else, or bytes that are not text. `f` must not run
/// Ruby code.
fn with_text<T>(value: Value, f: impl FnOnce(&str) -> T) -> Option<T> {
    if let Some(symbol) = Symbol::from_value(value) {
        return symbol.name().ok().map(|name| f(&name));
    }
    let string = RString::from_value(value)?;
    // SAFETY: the string is only read, and no Ruby code runs while it is borrowed.
    if let Ok(text) = unsafe { string.as_str() } {
        return Some(f(text));
    }
    if string.enc_get() == Ruby::get_with(string).ascii8bit_encindex() {
        // SAFETY: as above.
        return std::str::from_utf8(unsafe { string.as_slice() })
            .ok()
            .map(f);
    }
    string.to_string().ok().map(|text| f(&text))
}

/// [`with_text`] for a String or an object that converts to one with `to_str`.
fn with_string_text<T>(value: Value, f: impl FnOnce(&str) -> T) -> Option<T> {
    with_text(RString::try_convert(value).ok()?.as_value(), f)
}

/// A String argument as text (see [`with_string_text`]), or a `MalformedRequestError` naming
/// it.
fn text_argument(ruby: &Ruby, name: &str, value: Value) -> Result<String, Error> {
    with_string_text(value, str::to_owned).ok_or_else(|| {
        Failure::malformed(format!("`{name}` must be a String of UTF-8 text")).into_error(ruby)
    })
}

/// An entity reference: `{type:, id:}` (Symbol or String keys) with String values.
fn entity_ref(text: &mut RequestText, name: &str, value: Value) -> Result<(Span, Span), Failure> {
    let wrong = || Failure::malformed(format!("`{name}` must be {{type: String, id: String}}"));
    let hash = RHash::from_value(value).ok_or_else(wrong)?;
    let [type_name, id] = slots(hash, &REFERENCE_KEYS)
        .map_err(|problem| Failure::malformed(format!("`{name}`: {problem}")))?;
    let mut read = |v: Option<Value>| v.and_then(|v| push_string(text, v)).ok_or_else(wrong);
    Ok((read(type_name)?, read(id)?))
}

/// A JSON-like Ruby value (Hash with String or Symbol keys, Array, String, Symbol, Integer,
/// Float, true, false, nil), serialized as JSON without building an intermediate value. The
/// values stay on the stack, where Ruby's collector sees them.
struct Json {
    value: Value,
    depth: usize,
    /// The engine's `max_json_depth`.
    max_depth: usize,
}

impl Json {
    fn nested(&self, value: Value) -> Self {
        Self {
            value,
            depth: self.depth + 1,
            max_depth: self.max_depth,
        }
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = self.value;
        if self.depth > self.max_depth {
            return Err(ffi::too_deep(self.max_depth));
        }
        if let Some(hash) = RHash::from_value(value) {
            let mut map = serializer.serialize_map(Some(hash.len()))?;
            let mut failed = None;
            let _ = hash.foreach(|key: Value, item: Value| {
                let entry = with_text(key, |key| map.serialize_entry(key, &self.nested(item)))
                    .unwrap_or_else(|| {
                        Err(S::Error::custom("Hash keys must be Strings or Symbols"))
                    });
                Ok(match entry {
                    Ok(()) => ForEach::Continue,
                    Err(e) => {
                        failed = Some(e);
                        ForEach::Stop
                    }
                })
            });
            match failed {
                Some(e) => Err(e),
                None => map.end(),
            }
        } else if let Some(array) = RArray::from_value(value) {
            let mut seq = serializer.serialize_seq(Some(array.len()))?;
            for item in array {
                seq.serialize_element(&self.nested(item))?;
            }
            seq.end()
        } else if let Some(int) = Integer::from_value(value) {
            serializer.serialize_i64(int.to_i64().map_err(S::Error::custom)?)
        } else if let Some(float) = Float::from_value(value) {
            serializer.serialize_f64(float.to_f64())
        } else if Qtrue::from_value(value).is_some() {
            serializer.serialize_bool(true)
        } else if Qfalse::from_value(value).is_some() {
            serializer.serialize_bool(false)
        } else if value.is_nil() {
            serializer.serialize_unit()
        } else if RString::from_value(value).is_some() || Symbol::from_value(value).is_some() {
            with_text(value, |text| serializer.serialize_str(text))
                .unwrap_or_else(|| Err(S::Error::custom("a String is not valid UTF-8")))
        } else {
            Err(S::Error::custom(format!(
                "a {} is not JSON-like",
                value.class().inspect()
            )))
        }
    }
}

fn bundle_files(files: RHash) -> Result<Vec<BundleFile>, Failure> {
    let mut out = Vec::new();
    files
        .foreach(|path: String, contents: RString| {
            // Bytes as they are: text files must be UTF-8 (the load says so, naming the file),
            // a raw secret file (a binary String) need not be.
            // SAFETY: the string is only read, and copied before any Ruby code runs.
            out.push(BundleFile::new(
                path,
                unsafe { contents.as_slice() }.to_vec(),
            ));
            Ok(ForEach::Continue)
        })
        .map_err(|_| Failure::malformed("bundle files map String paths to String contents"))?;
    Ok(out)
}

/// Decides requests against one bundle at a time; safe to share between threads.
#[magnus::wrap(class = "Arbiter::Engine", free_immediately, size, frozen_shareable)]
struct Engine {
    inner: arbiter_core::Engine,
}

fn load(
    ruby: &Ruby,
    f: impl FnOnce() -> Result<arbiter_core::Engine, arbiter_core::LoadError> + Send,
) -> Result<Engine, Error> {
    without_gvl(ruby, || Ok(f()?)).map(|inner| Engine { inner })
}

impl Engine {
    fn from_bundle_dir(ruby: &Ruby, path: PathBuf) -> Result<Self, Error> {
        load(ruby, move || arbiter_core::Engine::from_bundle_dir(&path))
    }

    fn gitlab_default(ruby: &Ruby) -> Result<Self, Error> {
        load(ruby, arbiter_core::Engine::gitlab_default)
    }

    fn from_signed_bundle_dir(
        ruby: &Ruby,
        path: PathBuf,
        public_keys: Vec<String>,
    ) -> Result<Self, Error> {
        let keys = arbiter_core::TrustedKeys::from_pems(&public_keys)
            .map_err(|e| Failure::from(arbiter_core::LoadError::from(e)).into_error(ruby))?;
        load(ruby, move || {
            arbiter_core::Engine::from_signed_bundle_dir(&path, keys)
        })
    }

    fn from_files(ruby: &Ruby, files: RHash) -> Result<Self, Error> {
        let files = bundle_files(files).map_err(|e| e.into_error(ruby))?;
        load(ruby, move || arbiter_core::Engine::from_files(files))
    }

    fn reload_from_dir(ruby: &Ruby, rb_self: &Self, path: PathBuf) -> Result<(), Error> {
        without_gvl(ruby, || Ok(rb_self.inner.reload_from_dir(&path)?))
    }

    fn reload_from_files(ruby: &Ruby, rb_self: &Self, files: RHash) -> Result<(), Error> {
        let files = bundle_files(files).map_err(|e| e.into_error(ruby))?;
        without_gvl(ruby, || Ok(rb_self.inner.reload_from_files(files)?))
    }

    fn authorize_json(ruby: &Ruby, rb_self: Obj<Self>, request: Value) -> Result<String, Error> {
        let request = text_argument(ruby, "request", request)?;
        let decided = guard(ruby, || Ok(rb_self.inner.authorize_json(&request)?));
        deliver_events(ruby, rb_self)?;
        decided
    }

    fn authorize_json_batch(
        ruby: &Ruby,
        rb_self: Obj<Self>,
        requests: Value,
    ) -> Result<String, Error> {
        let requests = text_argument(ruby, "requests", requests)?;
        let engine = &rb_self.inner;
        let decided = without_gvl(ruby, || Ok(engine.authorize_json_batch(&requests)?));
        deliver_events(ruby, rb_self)?;
        decided
    }

    /// The body of `Engine#authorize` (its keywords are read in lib/arbiter.rb).
    #[allow(clippy::too_many_arguments)]
    fn authorize_parts(
        ruby: &Ruby,
        rb_self: Obj<Self>,
        principal: Value,
        action: Value,
        resource: Value,
        context: Value,
        entities: Value,
        token: Value,
        request_id: Value,
    ) -> Result<Value, Error> {
        let engine = &rb_self.inner;
        let mut text = RequestText::new(engine);
        let request = guard(ruby, || {
            read_request(
                &mut text, principal, action, resource, context, entities, token, request_id,
            )
        })?;
        let decide = || Ok(engine.authorize_parts(&request.parts(&text))?);
        // A token may need a signature check, which pays for giving up the GVL.
        let decided = if request.token.is_some() {
            without_gvl(ruby, decide)
        } else {
            guard(ruby, decide)
        };
        deliver_events(ruby, rb_self)?;
        decided.map(|d| Decision::object(ruby, d))
    }

    /// Decides an Array of requests (Hashes with the keywords of `authorize`) against one
    /// bundle version, without the GVL. Answers, in order, a Decision per request or the
    /// `Arbiter::Error` of a request that could not be decided (returned, not raised).
    fn authorize_many(ruby: &Ruby, rb_self: Obj<Self>, requests: RArray) -> Result<RArray, Error> {
        let engine = &rb_self.inner;
        let mut text = RequestText::new(engine);
        let items: Vec<Result<SpannedRequest, Failure>> = guard(ruby, || {
            Ok(requests
                .into_iter()
                .map(|request| read_request_hash(&mut text, request))
                .collect())
        })?;
        let answers = without_gvl(ruby, || {
            let read: Vec<Result<RequestParts<'_>, Failure>> = items
                .iter()
                .map(|item| item.as_ref().map(|r| r.parts(&text)).map_err(Clone::clone))
                .collect();
            Ok(ffi::authorize_read_batch(engine, &read))
        });
        deliver_events(ruby, rb_self)?;
        let answers = answers?;
        let out = ruby.ary_new_capa(answers.len());
        // Equal decisions share one (frozen) Decision: a list page's checks have few distinct
        // answers. Each is found again by its place in `out`, which holds it: a reference kept
        // on the Rust heap would be neither marked nor updated when the collector compacts.
        let mut shared: Vec<(CoreDecision, isize)> = Vec::new();
        for (at, answer) in answers.into_iter().enumerate() {
            match answer {
                Ok(decision) => match shared.iter().find(|(d, _)| *d == decision) {
                    Some(&(_, first)) => out.push(out.entry::<Value>(first)?)?,
                    None => {
                        let object = Decision::object(ruby, decision.clone());
                        if shared.len() < MAX_SHARED_DECISIONS {
                            shared.push((decision, at as isize));
                        }
                        out.push(object)?
                    }
                },
                Err(failure) => out.push(failure.exception(ruby)?)?,
            }
        }
        Ok(out)
    }

    /// Verifies a token without deciding anything: `{"valid" => true, "kind", "principal",
    /// "claims"}` or `{"valid" => false, "error" => {...}}`.
    fn verify_token(ruby: &Ruby, rb_self: &Self, token: RString) -> Result<Value, Error> {
        // Bytes that are not text are no token: Arbiter reports them malformed, like any other.
        let token = with_text(token.as_value(), str::to_owned).unwrap_or_else(|| {
            // SAFETY: the bytes are copied before any Ruby code can run.
            String::from_utf8_lossy(unsafe { token.as_slice() }).into_owned()
        });
        let verified = without_gvl(ruby, || {
            let verified = rb_self.inner.verify_token(&token);
            if let Ok(info) = &verified {
                info.claims(); // a JWT's payload is parsed here, without the GVL
            }
            Ok(verified)
        })?;
        serde_magnus::serialize(ruby, &TokenReport::from(&verified))
    }

    fn entities_json(ruby: &Ruby, rb_self: &Self) -> Result<String, Error> {
        guard(ruby, || Ok(rb_self.inner.entities_json()))
    }

    fn set_candidate_from_dir(ruby: &Ruby, rb_self: &Self, path: PathBuf) -> Result<(), Error> {
        without_gvl(ruby, || Ok(rb_self.inner.set_candidate_from_dir(&path)?))
    }

    fn set_candidate_from_files(ruby: &Ruby, rb_self: &Self, files: RHash) -> Result<(), Error> {
        let files = bundle_files(files).map_err(|e| e.into_error(ruby))?;
        without_gvl(ruby, || {
            Ok(rb_self.inner.set_candidate_from_files(files)?)
        })
    }

    fn clear_candidate(&self) {
        self.inner.clear_candidate();
    }

    fn shadow_report(ruby: &Ruby, rb_self: &Self) -> Result<Value, Error> {
        hash(ruby, &guard(ruby, || Ok(rb_self.inner.shadow_report()))?)
    }

    fn explain(ruby: &Ruby, rb_self: &Self, request: Value) -> Result<Value, Error> {
        let request = text_argument(ruby, "request", request)?;
        let explanation = guard(ruby, || Ok(rb_self.inner.explain_json(&request)?))?;
        hash(ruby, &explanation)
    }

    fn explain_text(ruby: &Ruby, rb_self: &Self, request: Value) -> Result<String, Error> {
        let request = text_argument(ruby, "request", request)?;
        guard(ruby, || Ok(rb_self.inner.explain_json(&request)?.to_text()))
    }

    /// The native half of `set_decision_log` (lib/arbiter.rb keeps the block).
    fn enable_decision_log(
        ruby: &Ruby,
        rb_self: &Self,
        sample_rate: f64,
        max_events_per_second: Option<u32>,
    ) -> Result<(), Error> {
        let options = DecisionLogOptions {
            sample_rate,
            max_events_per_second,
        };
        rb_self
            .inner
            .set_decision_log(options, hold_event)
            .map_err(|e| Error::new(ruby.exception_arg_error(), e.to_string()))
    }

    fn disable_decision_log(&self) {
        self.inner.clear_decision_log();
    }

    fn metrics(ruby: &Ruby, rb_self: &Self) -> Result<Value, Error> {
        hash(ruby, &guard(ruby, || Ok(rb_self.inner.metrics()))?)
    }

    fn metrics_prometheus(ruby: &Ruby, rb_self: &Self) -> Result<String, Error> {
        guard(ruby, || Ok(rb_self.inner.metrics().to_prometheus()))
    }

    #[cfg(feature = "fault-injection")]
    fn inject_panics(&self, on: bool) {
        self.inner.inject_panics(on);
    }
}

/// Hands the decision log events this thread's call held to the engine's block, now that the
/// GVL is held again. A block that raises a StandardError is reported with `warn` (that event
/// is lost, the decision stands); any other exception propagates.
fn deliver_events(ruby: &Ruby, engine: Obj<Engine>) -> Result<(), Error> {
    let events = take_held_events();
    if events.is_empty() {
        return Ok(());
    }
    let block: Value = engine.ivar_get("@decision_log")?;
    if block.is_nil() {
        return Ok(());
    }
    for event in events {
        let event = ruby.str_new(&event);
        event.freeze();
        if let Err(e) = block.funcall::<_, _, Value>("call", (event,)) {
            if !e.is_kind_of(ruby.exception_standard_error()) {
                return Err(e);
            }
            let warning =
                format!("arbiter: the decision log block raised ({e}); the event is lost");
            let _: Value = ruby.module_kernel().funcall("warn", (warning,))?;
        }
    }
    Ok(())
}

/// A report as a Hash with String keys, as JSON would give it.
fn hash(ruby: &Ruby, report: &impl serde::Serialize) -> Result<Value, Error> {
    let json = serde_json::to_value(report)
        .map_err(|e| Failure::internal(e.to_string()).into_error(ruby))?;
    serde_magnus::serialize(ruby, &json)
}

#[magnus::init(name = "arbiter_ruby")]
fn init(ruby: &Ruby) -> Result<(), Error> {
    let module = ruby.define_module("Arbiter")?;
    let base = module.define_error("Error", ruby.exception_standard_error())?;
    // One class per kind of core's error table, and the table itself ([code, kind, class name]),
    // which the tests walk.
    let table = ruby.ary_new();
    for kind in ErrorKind::ALL {
        let name = error_class_name(kind);
        module.define_error(name.as_str(), base)?;
        let row = ruby.ary_new_from_values(&[
            ruby.into_value(kind.code()),
            ruby.into_value(kind.as_str()),
            ruby.into_value(name.as_str()),
        ]);
        row.freeze();
        table.push(row)?;
    }
    table.freeze();
    module.const_set("ERROR_KINDS", table)?;

    let engine = module.define_class("Engine", ruby.class_object())?;
    engine.undef_default_alloc_func();
    engine.define_singleton_method("from_bundle_dir", function!(Engine::from_bundle_dir, 1))?;
    engine.define_singleton_method("gitlab_default", function!(Engine::gitlab_default, 0))?;
    engine.define_singleton_method("from_files", function!(Engine::from_files, 1))?;
    engine.define_singleton_method(
        "from_signed_bundle_dir",
        function!(Engine::from_signed_bundle_dir, 2),
    )?;
    engine.define_method("reload_from_dir", method!(Engine::reload_from_dir, 1))?;
    engine.define_method("reload_from_files", method!(Engine::reload_from_files, 1))?;
    engine.define_method("authorize_json", method!(Engine::authorize_json, 1))?;
    engine.define_method(
        "authorize_json_batch",
        method!(Engine::authorize_json_batch, 1),
    )?;
    engine.define_private_method("authorize_parts", method!(Engine::authorize_parts, 7))?;
    engine.define_private_method(
        "enable_decision_log",
        method!(Engine::enable_decision_log, 2),
    )?;
    engine.define_private_method(
        "disable_decision_log",
        method!(Engine::disable_decision_log, 0),
    )?;
    engine.define_method("authorize_many", method!(Engine::authorize_many, 1))?;
    engine.define_method("verify_token", method!(Engine::verify_token, 1))?;
    engine.define_method("entities_json", method!(Engine::entities_json, 0))?;
    engine.define_method(
        "set_candidate_from_dir",
        method!(Engine::set_candidate_from_dir, 1),
    )?;
    engine.define_method(
        "set_candidate_from_files",
        method!(Engine::set_candidate_from_files, 1),
    )?;
    engine.define_method("clear_candidate", method!(Engine::clear_candidate, 0))?;
    engine.define_method("shadow_report", method!(Engine::shadow_report, 0))?;
    engine.define_method("explain", method!(Engine::explain, 1))?;
    engine.define_method("explain_text", method!(Engine::explain_text, 1))?;
    engine.define_method("metrics", method!(Engine::metrics, 0))?;
    engine.define_method("metrics_prometheus", method!(Engine::metrics_prometheus, 0))?;
    #[cfg(feature = "fault-injection")]
    engine.define_method("inject_panics", method!(Engine::inject_panics, 1))?;

    let decision = module.define_class("Decision", ruby.class_object())?;
    decision.undef_default_alloc_func();
    decision.define_method("allowed?", method!(Decision::allowed, 0))?;
    decision.define_method("reasons", method!(Decision::reasons, 0))?;
    decision.define_method("errors", method!(Decision::errors, 0))?;
    decision.define_method("inspect", method!(Decision::inspect, 0))?;
    decision.define_method("to_h", method!(Decision::to_h, 0))?;

    let error = module.define_class("DecisionError", ruby.class_object())?;
    error.undef_default_alloc_func();
    error.define_method("kind", method!(DecisionError::kind, 0))?;
    error.define_method("policy", method!(DecisionError::policy, 0))?;
    error.define_method("message", method!(DecisionError::message, 0))?;
    error.define_method("inspect", method!(DecisionError::inspect, 0))?;
    error.define_method("to_h", method!(DecisionError::to_h, 0))?;
    // Both are values: equal when every field is.
    for name in ["==", "eql?"] {
        decision.define_method(name, method!(<Decision as typed_data::IsEql>::is_eql, 1))?;
        error.define_method(
            name,
            method!(<DecisionError as typed_data::IsEql>::is_eql, 1),
        )?;
    }
    decision.define_method("hash", method!(<Decision as typed_data::Hash>::hash, 0))?;
    error.define_method(
        "hash",
        method!(<DecisionError as typed_data::Hash>::hash, 0),
    )?;

    module.const_set("VERSION", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic, with or without the GVL, reaches Ruby as `Arbiter::InternalError`.
    #[test]
    fn panics_become_internal_errors() {
        // SAFETY: the only Ruby VM of this test binary, started on this thread.
        let ruby = unsafe { magnus::embed::init() };
        init(&ruby).unwrap();
        let errors = [
            guard(&ruby, || -> Result<(), Failure> { panic!("inside") }).unwrap_err(),
            without_gvl(&ruby, || -> Result<(), Failure> {
                panic!("without the GVL")
            })
            .unwrap_err(),
        ];
        for error in errors {
            let exception = error.value().expect("an exception");
            let class: magnus::RClass =
                ruby.get_inner(&ARBITER).const_get("InternalError").unwrap();
            let base: magnus::RClass = ruby.get_inner(&ARBITER).const_get("Error").unwrap();
            assert!(exception.is_kind_of(class) && exception.is_kind_of(base));
            let code: u32 = exception
                .funcall("instance_variable_get", ("@code",))
                .unwrap();
            assert_eq!(code, 900);
        }
        assert_eq!(without_gvl(&ruby, || Ok(7)).ok(), Some(7));
    }
}
