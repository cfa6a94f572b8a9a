//! Python bindings of Arbiter: converts values and errors, nothing more. Loading, reloading,
//! batches and token checks release the GIL; single decisions are shorter than a GIL round
//! trip and keep it. Each call's decision log events come back with its answer
//! (`arbiter_core::ffi::Logged`) and go to the engine's sink once the call has the GIL again.

mod decision;
mod engine;
mod error;
mod refresher;
mod request;

use pyo3::prelude::*;

#[pymodule]
fn _arbiter(m: &Bound<'_, PyModule>) -> PyResult<()> {
    error::init(m)?;
    engine::init(m)?;
    decision::init(m)?;
    refresher::init(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
