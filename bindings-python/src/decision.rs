//! `Decision` and `DecisionError`: frozen values over core's decision.

use arbiter_core::Decision as CoreDecision;
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

/// `repr(value)`, as Python writes it.
fn repr<'py>(py: Python<'py>, value: impl IntoPyObject<'py>) -> PyResult<String> {
    Ok(value.into_bound_py_any(py)?.repr()?.to_string())
}

/// An error met while deciding: a policy that failed to evaluate (`policy` set), or a token
/// that was refused (`kind` is one of the contract's token error kinds).
#[pyclass(frozen, get_all, eq, hash, module = "arbiter")]
#[derive(Clone, PartialEq, Eq, Hash)]
struct DecisionError {
    kind: String,
    policy: Option<String>,
    message: String,
}

#[pymethods]
impl DecisionError {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "DecisionError(kind={}, policy={}, message={})",
            repr(py, &self.kind)?,
            repr(py, &self.policy)?,
            repr(py, &self.message)?
        ))
    }
}

/// The answer to a request: `allowed`, the ids of the determining policies (`reasons`) and
/// every error met (`errors`). Equal decisions compare equal and hash alike.
#[pyclass(frozen, get_all, eq, hash, module = "arbiter")]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct Decision {
    allowed: bool,
    reasons: Vec<String>,
    errors: Vec<DecisionError>,
}

impl From<CoreDecision> for Decision {
    fn from(d: CoreDecision) -> Self {
        Self {
            allowed: d.allowed(),
            reasons: d.reasons,
            errors: d
                .errors
                .into_iter()
                .map(|e| DecisionError {
                    kind: e.kind.as_str().to_owned(),
                    policy: e.policy,
                    message: e.message,
                })
                .collect(),
        }
    }
}

#[pymethods]
impl Decision {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Decision(allowed={}, reasons={}, errors={})",
            repr(py, self.allowed)?,
            repr(py, &self.reasons)?,
            self.errors.len()
        ))
    }

    fn __bool__(&self) -> bool {
        self.allowed
    }
}

/// Adds `Decision` and `DecisionError` to the module.
pub(crate) fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Decision>()?;
    m.add_class::<DecisionError>()
}
