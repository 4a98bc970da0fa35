//! From Rust failures to Java exceptions, and the guard every native runs in.

use crate::raw::classes;
use dynadax::Error;
use jni::objects::{JObject, JThrowable, JValue};
use jni::JNIEnv;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Why a native call failed.
pub(crate) enum Failure {
    /// A dynadax error: the exception its kind maps to, with its message and path.
    Dax(Error),
    /// An argument out of range: `IllegalArgumentException`.
    Arg(String),
    /// A JNI call failed (often with a Java exception already pending, which is kept).
    Jni(jni::errors::Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Dax(e)
    }
}

impl From<jni::errors::Error> for Failure {
    fn from(e: jni::errors::Error) -> Self {
        Failure::Jni(e)
    }
}

pub(crate) type Res<T> = Result<T, Failure>;

/// An argument check.
pub(crate) fn arg(ok: bool, what: impl FnOnce() -> String) -> Res<()> {
    if ok {
        Ok(())
    } else {
        Err(Failure::Arg(what()))
    }
}

/// Runs a native's body: its error becomes a pending Java exception, and so does a
/// panic (caught here: unwinding into the JVM is undefined behaviour). Returns
/// `fallback` whenever an exception is pending, which the JVM then ignores.
pub(crate) fn guard<'l, T>(env: &mut JNIEnv<'l>, fallback: T, f: impl FnOnce(&mut JNIEnv<'l>) -> Res<T>) -> T {
    match catch_unwind(AssertUnwindSafe(|| f(&mut *env))) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            throw(env, e);
            fallback
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            if !env.exception_check().unwrap_or(true) {
                let _ = env.throw_new("java/lang/RuntimeException", format!("dynadax: internal error: {what}"));
            }
            fallback
        }
    }
}

fn throw(env: &mut JNIEnv<'_>, e: Failure) {
    if env.exception_check().unwrap_or(true) {
        return; // A Java exception (or a JNI failure that left one) says it already.
    }
    let r = match e {
        Failure::Arg(msg) => env.throw_new("java/lang/IllegalArgumentException", msg),
        Failure::Jni(e) => env.throw_new("java/lang/RuntimeException", format!("dynadax: JNI call failed: {e}")),
        Failure::Dax(e) => throw_dax(env, &e),
    };
    if r.is_err() && !env.exception_check().unwrap_or(true) {
        let _ = env.throw_new("java/lang/RuntimeException", "dynadax: could not build the exception");
    }
}

fn throw_dax(env: &mut JNIEnv<'_>, e: &Error) -> jni::errors::Result<()> {
    let c = classes();
    let msg = env.new_string(e.to_string())?;
    let path = env.new_string(e.path().to_string_lossy())?;
    let (m, p) = (JValue::Object(&msg), JValue::Object(&path));
    const TWO: &str = "(Ljava/lang/String;Ljava/lang/String;)V";
    let obj: JObject<'_> = match e {
        Error::Busy { .. } => env.new_object(c.busy_exception(), TWO, &[m, p])?,
        Error::NotFound { .. } => {
            let null = JObject::null();
            env.new_object(
                "java/nio/file/NoSuchFileException",
                "(Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;)V",
                &[p, JValue::Object(&null), m],
            )?
        }
        Error::Damaged { .. } => corrupt(env, e, m, p)?,
        Error::Corrupt { what, .. } if what.starts_with("log") => corrupt(env, e, m, p)?,
        Error::Full { .. } => env.new_object(c.full_exception(), TWO, &[m, p])?,
        _ => env.new_object(c.dax_exception(), TWO, &[m, p])?,
    };
    env.throw(JThrowable::from(obj))
}

fn corrupt<'l>(env: &mut JNIEnv<'l>, e: &Error, m: JValue, p: JValue) -> jni::errors::Result<JObject<'l>> {
    let offset = e.offset().map_or(-1, |o| o as i64);
    env.new_object(
        classes().corrupt_exception(),
        "(Ljava/lang/String;Ljava/lang/String;J)V",
        &[m, p, JValue::Long(offset)],
    )
}
