//! Reading `authorize`'s keywords and `authorize_many`'s dicts into core's request buffer:
//! entity references, tokens and ids copied in, contexts and entities written as JSON.

use crate::error::Failure;
use arbiter_core::ffi::{Depth, HostValue, RequestText, Span, SpannedRequest, REQUEST_FIELDS};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

/// A Python value a request's field holds (never None: a None field is left out).
struct Field<'a, 'py>(&'a Bound<'py, PyAny>);

impl HostValue for Field<'_, '_> {
    /// `{"type": str, "id": str}`, read straight from the dict.
    fn entity_ref(&self, text: &mut RequestText, field: &str) -> Result<(Span, Span), Failure> {
        let wrong =
            || Failure::malformed(format!("`{field}` must be {{\"type\": str, \"id\": str}}"));
        let dict = self.0.cast::<PyDict>().map_err(|_| wrong())?;
        if dict.len() != 2 {
            return Err(wrong());
        }
        let mut read = |key: &str| {
            let value = dict.get_item(key).ok().flatten().ok_or_else(wrong)?;
            let value = value.cast::<PyString>().map_err(|_| wrong())?;
            value.to_str().map(|s| text.push(s)).map_err(|_| wrong())
        };
        Ok((read("type")?, read("id")?))
    }

    /// A JSON-like Python value (dict with str keys, list, tuple, str, bool, int, float, None)
    /// written as JSON.
    fn json(&self, text: &mut RequestText, field: &str) -> Result<Span, Failure> {
        text.push_host_json(field, |depth| Json {
            value: self.0,
            depth,
        })
    }

    fn string(&self, text: &mut RequestText, field: &str) -> Result<Span, Failure> {
        self.0
            .cast::<PyString>()
            .ok()
            .and_then(|v| v.to_str().ok().map(|s| text.push(s)))
            .ok_or_else(|| Failure::malformed(format!("`{field}` must be a str")))
    }
}

/// Serializes a Python value as JSON without building an intermediate value.
struct Json<'a, 'py> {
    value: &'a Bound<'py, PyAny>,
    depth: Depth,
}

impl<'py> Json<'_, 'py> {
    fn nested<'b>(&self, value: &'b Bound<'py, PyAny>) -> Json<'b, 'py> {
        Json {
            value,
            depth: self.depth.deeper(),
        }
    }
}

impl Serialize for Json<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = self.value;
        self.depth.check()?;
        if let Ok(dict) = value.cast::<PyDict>() {
            let mut map = serializer.serialize_map(Some(dict.len()))?;
            for (key, item) in dict.iter() {
                let key = key
                    .cast::<PyString>()
                    .ok()
                    .and_then(|k| k.to_str().ok().map(str::to_owned))
                    .ok_or_else(|| S::Error::custom("dict keys must be str"))?;
                map.serialize_entry(&key, &self.nested(&item))?;
            }
            map.end()
        } else if let Ok(list) = value.cast::<PyList>() {
            let mut seq = serializer.serialize_seq(Some(list.len()))?;
            for item in list.iter() {
                seq.serialize_element(&self.nested(&item))?;
            }
            seq.end()
        } else if let Ok(tuple) = value.cast::<PyTuple>() {
            let mut seq = serializer.serialize_seq(Some(tuple.len()))?;
            for item in tuple.iter() {
                seq.serialize_element(&self.nested(&item))?;
            }
            seq.end()
        } else if let Ok(text) = value.cast::<PyString>() {
            serializer.serialize_str(text.to_str().map_err(S::Error::custom)?)
        } else if let Ok(flag) = value.cast::<PyBool>() {
            serializer.serialize_bool(flag.is_true())
        } else if let Ok(int) = value.cast::<PyInt>() {
            serializer.serialize_i64(int.extract().map_err(S::Error::custom)?)
        } else if let Ok(float) = value.cast::<PyFloat>() {
            serializer.serialize_f64(float.value())
        } else if value.is_none() {
            serializer.serialize_unit()
        } else {
            let type_name = value
                .get_type()
                .name()
                .map_or_else(|_| "?".to_owned(), |n| n.to_string());
            Err(S::Error::custom(format!("a {type_name} is not JSON-like")))
        }
    }
}

/// Reads the arguments of `authorize`, in the order of core's request fields (`None` for one
/// left out), into `text`.
pub(crate) fn read_request(
    text: &mut RequestText,
    fields: [Option<&Bound<'_, PyAny>>; 7],
) -> Result<SpannedRequest, Failure> {
    text.read_request(fields.map(|v| v.map(Field)))
}

/// Reads a request of `authorize_many`: a dict with the keywords of `authorize`.
pub(crate) fn read_request_dict(
    text: &mut RequestText,
    obj: &Bound<'_, PyAny>,
) -> Result<SpannedRequest, Failure> {
    let dict = obj.cast::<PyDict>().map_err(|_| {
        Failure::malformed("a request must be a dict with the keywords of `authorize`")
    })?;
    for key in dict.keys() {
        let known = key
            .cast::<PyString>()
            .ok()
            .and_then(|k| k.to_str().ok())
            .is_some_and(|k| REQUEST_FIELDS.contains(&k));
        if !known {
            return Err(Failure::malformed(format!(
                "unknown key {key} in a request; expected {}",
                REQUEST_FIELDS.join(", ")
            )));
        }
    }
    let values = REQUEST_FIELDS.map(|k| dict.get_item(k).ok().flatten().filter(|v| !v.is_none()));
    text.read_request(values.each_ref().map(|v| v.as_ref().map(Field)))
}
