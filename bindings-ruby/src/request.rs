//! Reading `authorize`'s keywords and `authorize_many`'s Hashes into core's request buffer:
//! entity references, tokens and ids copied in, contexts and entities written as JSON.

use crate::error::{Failure, RubyError};
use arbiter_core::ffi::{Depth, HostValue, RequestText, Span, SpannedRequest, REQUEST_FIELDS};
use magnus::r_hash::ForEach;
use magnus::value::{LazyId, Qfalse, Qtrue, ReprValue};
use magnus::{
    prelude::*, Error, Float, Integer, RArray, RHash, RString, Ruby, Symbol, TryConvert, Value,
};
use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

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

/// The keywords of `authorize`: core's request fields.
static KEYWORDS: Keys<7> = Keys {
    names: REQUEST_FIELDS,
    ids: [
        LazyId::new(REQUEST_FIELDS[0]),
        LazyId::new(REQUEST_FIELDS[1]),
        LazyId::new(REQUEST_FIELDS[2]),
        LazyId::new(REQUEST_FIELDS[3]),
        LazyId::new(REQUEST_FIELDS[4]),
        LazyId::new(REQUEST_FIELDS[5]),
        LazyId::new(REQUEST_FIELDS[6]),
    ],
};

/// The keys of an entity reference.
static REFERENCE_KEYS: Keys<2> = keys!("type", "id");

/// A String (or an object that converts to one with `to_str`), copied into `text`.
fn push_string(text: &mut RequestText, value: Value) -> Option<Span> {
    with_string_text(value, |s| text.push(s))
}

/// A Ruby value a request's field holds (never nil: a nil field is left out).
struct Field(Value);

impl HostValue for Field {
    /// `{type:, id:}` (Symbol or String keys) with String values.
    fn entity_ref(&self, text: &mut RequestText, field: &str) -> Result<(Span, Span), Failure> {
        let wrong =
            || Failure::malformed(format!("`{field}` must be {{type: String, id: String}}"));
        let hash = RHash::from_value(self.0).ok_or_else(wrong)?;
        let [type_name, id] = slots(hash, &REFERENCE_KEYS)
            .map_err(|problem| Failure::malformed(format!("`{field}`: {problem}")))?;
        let mut read = |v: Option<Value>| v.and_then(|v| push_string(text, v)).ok_or_else(wrong);
        Ok((read(type_name)?, read(id)?))
    }

    /// A JSON-like Ruby value (see [`Json`]) written as JSON.
    fn json(&self, text: &mut RequestText, field: &str) -> Result<Span, Failure> {
        text.push_host_json(field, |depth| Json {
            value: self.0,
            depth,
        })
    }

    fn string(&self, text: &mut RequestText, field: &str) -> Result<Span, Failure> {
        push_string(text, self.0)
            .ok_or_else(|| Failure::malformed(format!("`{field}` must be a String of UTF-8 text")))
    }
}

/// Reads the arguments of `authorize`, in the order of core's request fields (nil for one
/// left out), into `text`.
pub(crate) fn read_request(
    text: &mut RequestText,
    fields: [Value; 7],
) -> Result<SpannedRequest, Failure> {
    text.read_request(fields.map(|v| (!v.is_nil()).then_some(Field(v))))
}

/// Reads one request of `authorize_many`: a Hash with the keywords of `authorize`.
pub(crate) fn read_request_hash(
    text: &mut RequestText,
    request: Value,
) -> Result<SpannedRequest, Failure> {
    let hash = RHash::from_value(request).ok_or_else(|| {
        Failure::malformed("a request must be a Hash with the keywords of `authorize`")
    })?;
    let fields = slots(hash, &KEYWORDS).map_err(|wrong| {
        Failure::malformed(format!(
            "{wrong} in a request; expected {}",
            KEYWORDS.names.join(", ")
        ))
    })?;
    text.read_request(fields.map(|v| v.filter(|v| !v.is_nil()).map(Field)))
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
pub(crate) fn with_text<T>(value: Value, f: impl FnOnce(&str) -> T) -> Option<T> {
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
/// The elements of `array`, read in place. magnus's `RArray` iterator reads a hidden copy
/// sharing the original's buffer, and Ruby 3.1 crashes when the compacting collector moves
/// such a pair mid-read (seen with `GC.auto_compact` and `GC.stress`); reading by index makes
/// no copy. Elements the array loses meanwhile are not read.
pub(crate) fn elements(array: RArray) -> impl Iterator<Item = Value> {
    (0..).map_while(move |at: usize| match at < array.len() {
        true => array.entry(at as isize).ok(),
        false => None,
    })
}

pub(crate) fn text_argument(ruby: &Ruby, name: &str, value: Value) -> Result<String, Error> {
    with_string_text(value, str::to_owned).ok_or_else(|| {
        Failure::malformed(format!("`{name}` must be a String of UTF-8 text")).into_error(ruby)
    })
}

/// A JSON-like Ruby value (Hash with String or Symbol keys, Array, String, Symbol, Integer,
/// Float, true, false, nil), serialized as JSON without building an intermediate value. The
/// values stay on the stack, where Ruby's collector sees them.
struct Json {
    value: Value,
    depth: Depth,
}

impl Json {
    fn nested(&self, value: Value) -> Self {
        Self {
            value,
            depth: self.depth.deeper(),
        }
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = self.value;
        self.depth.check()?;
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
            for item in elements(array) {
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
