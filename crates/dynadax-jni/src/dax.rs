//! `io.dynadax.Dax`: probe, stat, set a path's mode; and the `Probe` and `Status`
//! objects.

use crate::errors::{arg, guard, Res};
use crate::raw::classes;
use dynadax::{Mode, Status, SwitchOptions};
use jni::objects::{JClass, JObject, JString, JValue};
use jni::sys::{jint, jlong, jobject, jstring};
use jni::JNIEnv;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) fn path(env: &mut JNIEnv<'_>, s: &JString<'_>) -> Res<PathBuf> {
    arg(!s.is_null(), || "path is null".into())?;
    Ok(PathBuf::from(String::from(env.get_string(s)?)))
}

/// `Mode` ordinal: 0 direct, 1 cached.
pub(crate) fn mode(ordinal: jint) -> Res<Mode> {
    match ordinal {
        0 => Ok(Mode::Direct),
        1 => Ok(Mode::Cached),
        n => Err(crate::errors::Failure::Arg(format!("no mode with ordinal {n}"))),
    }
}

fn ordinal(m: Mode) -> jint {
    match m {
        Mode::Direct => 0,
        Mode::Cached => 1,
    }
}

/// `waitNanos` < 0: fail at once while mapped.
pub(crate) fn switch_options(wait_nanos: jlong) -> SwitchOptions {
    SwitchOptions { wait: u64::try_from(wait_nanos).ok().map(Duration::from_nanos) }
}

fn opt_string<'l>(env: &mut JNIEnv<'l>, s: Option<&str>) -> Res<JObject<'l>> {
    Ok(match s {
        Some(s) => env.new_string(s)?.into(),
        None => JObject::null(),
    })
}

pub(crate) fn status<'l>(env: &mut JNIEnv<'l>, st: &Status) -> Res<jobject> {
    let path = env.new_string(st.path.to_string_lossy())?;
    let backing = opt_string(env, st.backing.map(|b| b.as_str()))?;
    let reason = env.new_string(&st.reason)?;
    let persistence = opt_string(env, st.persistence.as_deref())?;
    let policy = env.new_string(st.policy.as_str())?;
    let obj = env.new_object(
        classes().status(),
        "(Ljava/lang/String;ZIILjava/lang/String;ZLjava/lang/String;Ljava/lang/String;ILjava/lang/String;)V",
        &[
            JValue::Object(&path),
            JValue::Bool(matches!(st.kind, dynadax::Kind::Directory).into()),
            JValue::Int(ordinal(st.physical)),
            JValue::Int(st.effective.map_or(-1, ordinal)),
            JValue::Object(&backing),
            JValue::Bool(st.pending.into()),
            JValue::Object(&reason),
            JValue::Object(&persistence),
            JValue::Int(st.live_mappings.min(i32::MAX as usize) as jint),
            JValue::Object(&policy),
        ],
    )?;
    Ok(obj.into_raw())
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_version<'l>(mut env: JNIEnv<'l>, _: JClass<'l>) -> jstring {
    guard(&mut env, std::ptr::null_mut(), |env| Ok(env.new_string(env!("CARGO_PKG_VERSION"))?.into_raw()))
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_probe<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    p: JString<'l>,
) -> jobject {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let pr = dynadax::probe(path(env, &p)?)?;
        // Kernel DAX serves (or would serve) a file here: statx says so for an
        // existing file; otherwise only a DAX file takes a MAP_SYNC mapping.
        let dax = pr.statx_dax.unwrap_or(pr.map_sync);
        let persistence = env.new_string(pr.persistence)?;
        let reason = env.new_string(&pr.reason)?;
        let fs = env.new_string(&pr.fs_type)?;
        let mount = env.new_string(pr.mount_point.to_string_lossy())?;
        let flush = env.new_string(format!("{:?}", pr.flush_instruction).to_lowercase())?;
        let obj = env.new_object(
            classes().probe(),
            "(ZZLjava/lang/String;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;ZII)V",
            &[
                JValue::Bool(dax.into()),
                JValue::Bool(pr.map_sync.into()),
                JValue::Object(&persistence),
                JValue::Object(&reason),
                JValue::Object(&fs),
                JValue::Object(&mount),
                JValue::Object(&flush),
                JValue::Bool(pr.exists.into()),
                JValue::Int(ordinal(pr.physical)),
                JValue::Int(ordinal(pr.effective)),
            ],
        )?;
        Ok(obj.into_raw())
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_stat<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    p: JString<'l>,
) -> jobject {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let st = dynadax::stat(path(env, &p)?)?;
        status(env, &st)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_setMode<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    p: JString<'l>,
    m: jint,
    wait_nanos: jlong,
) -> jobject {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let st = dynadax::set_mode(path(env, &p)?, mode(m)?, switch_options(wait_nanos))?;
        status(env, &st)
    })
}
