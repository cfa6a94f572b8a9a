//! Running Rust work without the GVL, with interrupts raised only once it has returned.

use std::ffi::c_void;

use crate::error::{Failure, RubyError};
use arbiter_core::ffi::guarded;
use magnus::rb_sys::AsRawValue;
use magnus::{Error, Ruby};

/// Runs `f` without the GVL, so other Ruby threads run meanwhile. `f` must not touch Ruby
/// objects; a panic in it becomes an `InternalError`. An interrupt Ruby finds pending on the
/// way in or out (`Thread#raise`, `Thread#kill`, a signal) is the answer instead, raised once
/// the Rust frames have returned rather than across them.
pub(crate) fn without_gvl<T, F>(ruby: &Ruby, f: F) -> Result<T, Error>
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
