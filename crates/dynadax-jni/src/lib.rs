//! The JNI library behind dynadax's Java binding (`java/`): the native methods of
//! `io.dynadax.internal.Native`, whose Javadoc is the contract (handles, the Java
//! objects built here, the exceptions thrown).
//!
//! Layout: `raw` holds every `unsafe` operation (handles as raw pointers, JNI calls
//! through cached constructor IDs, direct-buffer memory); `errors` turns a dynadax
//! error or a panic into the Java exception the contract names, so no Rust panic
//! ever unwinds into the JVM; `dax`, `file` and `log` are the three Java classes'
//! natives.
//!
//! Use after close is ruled out on the Java side (`NativeResource`: a call in flight
//! keeps the Rust object alive, a call after close throws before it gets here), so a
//! handle reaching this library is always live.

mod dax;
mod errors;
mod file;
mod log;
mod raw;

use jni::sys::{jint, JNI_ERR, JNI_VERSION_1_8};
use jni::JavaVM;
use std::ffi::c_void;

/// Caches the classes and constructors the natives build, with the loader of the
/// class that loaded the library (later lookups from other threads would not find
/// the binding's classes).
#[no_mangle]
pub extern "system" fn JNI_OnLoad(vm: JavaVM, _reserved: *mut c_void) -> jint {
    let Ok(mut env) = vm.get_env() else { return JNI_ERR };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| raw::Classes::init(&mut env))) {
        Ok(Ok(())) => JNI_VERSION_1_8,
        // The JVM turns JNI_ERR into an UnsatisfiedLinkError; a pending
        // NoClassDefFoundError says which class was missing.
        _ => JNI_ERR,
    }
}
