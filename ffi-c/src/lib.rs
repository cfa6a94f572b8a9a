//! The C ABI of Arbiter (rustls-ffi is the model).
//!
//! Conventions, for every function:
//! - Every symbol starts with `arbiter_`. Objects are opaque and owned by the caller once
//!   returned; each has a `_free` function, and `_free(NULL)` does nothing.
//! - A fallible function returns a result code, `ARBITER_RESULT_OK` (0) on success, and takes
//!   an optional last `arbiter_error **err_out`: when it is not NULL and the call fails, it
//!   receives an error the caller frees with `arbiter_error_free`. Outputs are written only on
//!   success.
//! - Strings passed in are UTF-8; either NUL-terminated (`const char *`) or pointer and length
//!   (`arbiter_str`, `request` with `request_len`). Strings handed out are NUL-terminated.
//! - A panic inside Arbiter never unwinds into C and never yields an allow: while deciding, the
//!   decision is a deny with an `internal` error; anywhere else the call fails with
//!   `ARBITER_RESULT_INTERNAL` (a reload that fails so keeps the old bundle).
//! - A `const arbiter_engine *` may be used from many threads at once, a reload included.
//!
//! Result codes come in blocks: 1-99 misuse of the ABI, 100-199 bundle loading (the `kind`s of
//! `LoadError`), 200-299 requests (the `kind`s of `RequestError`), 900 internal errors.

#![allow(non_camel_case_types)]

mod args;
mod decision;
mod decision_log;
mod engine;
mod refresher;
mod result;

// The whole ABI at the crate root, as C sees it (and as the fuzz target, which compiles this
// source, uses it).
pub use args::*;
pub use decision::*;
pub use decision_log::*;
pub use engine::*;
pub use refresher::*;
pub use result::arbiter_result::*;
pub use result::*;

#[cfg(test)]
mod tests;
