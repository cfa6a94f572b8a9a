//! Errors: `ArbiterError`, and a subclass per kind of core's error table, raised from failures.

use std::ffi::CString;

use arbiter_core::{CallError, ErrorKind};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyTuple, PyType};

create_exception!(
    arbiter,
    ArbiterError,
    PyException,
    "An error of an Arbiter call; `code` and `kind` say which."
);
/// One `ArbiterError` subclass per kind of core's error table, named after it
/// (`PolicyParseError` for `policy_parse`), made at import in the table's order.
static ERROR_TYPES: PyOnceLock<Vec<Py<PyType>>> = PyOnceLock::new();

/// Adds `ArbiterError` to the module, makes the error classes of [`ERROR_TYPES`] and adds
/// them, with the table itself as `ERROR_KINDS`: `(code, kind, class name)` tuples, which the
/// tests walk.
pub(crate) fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ArbiterError", py.get_type::<ArbiterError>())?;
    let base = py.get_type::<ArbiterError>();
    let mut types = Vec::with_capacity(ErrorKind::ALL.len());
    let mut table = Vec::with_capacity(ErrorKind::ALL.len());
    for kind in ErrorKind::ALL {
        let name = format!("{}Error", kind.name());
        let qualified = CString::new(format!("arbiter.{name}"))?;
        let doc = CString::new(format!(
            "{} (kind `{kind}`, code {}).",
            kind.doc(),
            kind.code()
        ))?;
        let class = PyErr::new_type(py, &qualified, Some(&doc), Some(&base), None)?;
        m.add(name.as_str(), class.bind(py))?;
        table.push((kind.code(), kind.as_str(), name));
        types.push(class);
    }
    m.add("ERROR_KINDS", PyTuple::new(py, table)?)?;
    ERROR_TYPES
        .set(py, types)
        .map_err(|_| PyTypeError::new_err("the arbiter module was initialized twice"))
}

/// An error before it becomes a Python exception.
pub(crate) type Failure = CallError;

/// Raising a [`Failure`] as the exception class for its kind, with `code`, `kind`, `message`.
pub(crate) trait IntoPyErr {
    fn into_py(self, py: Python<'_>) -> PyErr;
}

impl IntoPyErr for Failure {
    fn into_py(self, py: Python<'_>) -> PyErr {
        let message = self.message.clone();
        let class = ERROR_TYPES.get(py).and_then(|types| {
            let at = ErrorKind::ALL.iter().position(|k| *k == self.kind)?;
            Some(types[at].bind(py).clone())
        });
        let err = match class {
            Some(class) => PyErr::from_type(class, message),
            // Only before the module is initialized, when nothing can call here.
            None => ArbiterError::new_err(message),
        };
        let value = err.value(py);
        // Setting plain attributes on a fresh exception cannot fail.
        let _ = value.setattr("code", self.code());
        let _ = value.setattr("kind", self.kind.as_str());
        let _ = value.setattr("message", self.message);
        err
    }
}
