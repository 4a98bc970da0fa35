//! `io.dynadax.DaxFile` and `io.dynadax.Mapping`.

use crate::dax::{mode, path, status, switch_options};
use crate::errors::{arg, guard, Res};
use crate::raw::{self, as_jbytes, as_jbytes_mut, free, handle, into_handle, with_direct, with_direct_mut};
use dynadax::{Detached, File, MapGuard};
use jni::objects::{JByteArray, JByteBuffer, JClass, JString};
use jni::sys::{jboolean, jint, jlong, jobject};
use jni::JNIEnv;

/// A Java `Mapping`'s memory after its close: the detached addresses, or, if the
/// detach itself failed (no memory for the zero pages), the guard itself, so the
/// buffer never points at unmapped memory; either lives until the buffer's cleaner.
enum Placeholder {
    Detached(#[allow(dead_code)] Detached),
    Kept(#[allow(dead_code)] MapGuard),
}

fn positional(off: jint, len: jint, position: jlong, array_len: jint) -> Res<u64> {
    arg(off >= 0 && len >= 0 && off as i64 + len as i64 <= array_len as i64, || {
        format!("bytes {off}..{} lie outside the array's {array_len}", off as i64 + len as i64)
    })?;
    arg(position >= 0, || format!("negative file position {position}"))?;
    Ok(position as u64)
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_fileOpen<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    p: JString<'l>,
    create: jboolean,
) -> jlong {
    guard(&mut env, 0, |env| {
        let p = path(env, &p)?;
        let f = if create != 0 { File::create(&p)? } else { File::open(&p)? };
        Ok(into_handle(f))
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_fileFree<'l>(mut env: JNIEnv<'l>, _: JClass<'l>, h: jlong) {
    guard(&mut env, (), |_| {
        drop(free::<File>(h));
        Ok(())
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_fileSize<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
) -> jlong {
    guard(&mut env, 0, |_| Ok(handle::<File>(h).len()? as jlong))
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_fileSetLength<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    len: jlong,
) {
    guard(&mut env, (), |_| {
        arg(len >= 0, || format!("negative length {len}"))?;
        Ok(handle::<File>(h).set_len(len as u64)?)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_fileRead<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    dst: JByteArray<'l>,
    off: jint,
    len: jint,
    position: jlong,
) -> jint {
    guard(&mut env, 0, |env| {
        let at = positional(off, len, position, env.get_array_length(&dst)?)?;
        let mut buf = vec![0u8; len as usize];
        // One read, which may be short, as `FileChannel.read` may.
        let n = handle::<File>(h).read_at(&mut buf, at)?;
        env.set_byte_array_region(&dst, off, as_jbytes(&buf[..n]))?;
        Ok(n as jint)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_fileReadDirect<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    dst: JByteBuffer<'l>,
    off: jint,
    len: jint,
    position: jlong,
) -> jint {
    guard(&mut env, 0, |env| {
        arg(position >= 0, || format!("negative file position {position}"))?;
        with_direct_mut(env, &dst, off, len, |buf| Ok(handle::<File>(h).read_at(buf, position as u64)? as jint))
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_fileWrite<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    src: JByteArray<'l>,
    off: jint,
    len: jint,
    position: jlong,
) {
    guard(&mut env, (), |env| {
        let at = positional(off, len, position, env.get_array_length(&src)?)?;
        let mut buf = vec![0u8; len as usize];
        env.get_byte_array_region(&src, off, as_jbytes_mut(&mut buf))?;
        Ok(handle::<File>(h).write_at(&buf, at)?)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_fileWriteDirect<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    src: JByteBuffer<'l>,
    off: jint,
    len: jint,
    position: jlong,
) {
    guard(&mut env, (), |env| {
        arg(position >= 0, || format!("negative file position {position}"))?;
        with_direct(env, &src, off, len, |buf| Ok(handle::<File>(h).write_at(buf, position as u64)?))
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_filePersist<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    off: jlong,
    len: jlong,
) {
    guard(&mut env, (), |_| {
        arg(off >= 0 && len >= 0, || format!("negative range {off}+{len}"))?;
        Ok(handle::<File>(h).persist(off as u64, len as u64)?)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_fileStatus<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
) -> jobject {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let st = handle::<File>(h).status()?;
        status(env, &st)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_fileSetMode<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    m: jint,
    wait_nanos: jlong,
) -> jobject {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let st = handle::<File>(h).set_mode(mode(m)?, switch_options(wait_nanos))?;
        status(env, &st)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_mapOpen<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    off: jlong,
    len: jlong,
    writable: jboolean,
) -> jlong {
    guard(&mut env, 0, |_| {
        // A ByteBuffer holds at most Integer.MAX_VALUE bytes.
        arg(off >= 0 && len > 0 && len <= i32::MAX as jlong, || {
            format!("cannot map {len} bytes at {off}: a mapping is 1 to {} bytes at a non-negative offset", i32::MAX)
        })?;
        let g = handle::<File>(h).map_detachable(off as u64, len as usize, writable != 0)?;
        Ok(into_handle(g))
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_mapBuffer<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
) -> jobject {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let g = handle::<MapGuard>(h);
        Ok(raw::mapping_buffer(env, g.as_ptr(), g.len())?.into_raw())
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_mapPersist<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    off: jlong,
    len: jlong,
) {
    guard(&mut env, (), |_| {
        let g = handle::<MapGuard>(h);
        arg(off >= 0 && len >= 0 && (off as u128 + len as u128) <= g.len() as u128, || {
            format!("bytes {off}..{} lie outside the mapping's {}", off as i128 + len as i128, g.len())
        })?;
        Ok(g.persist(off as usize, len as usize)?)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_mapFree<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
) -> jlong {
    guard(&mut env, 0, |_| {
        let g = free::<MapGuard>(h);
        // `map_detachable` made it, so detach fails only if the kernel cannot give
        // the zero pages; the guard then stays (and the file stays busy) until the
        // buffer is collected, rather than leaving the buffer over unmapped memory.
        let kept = match g.detach() {
            Ok(d) => Placeholder::Detached(d),
            Err((g, _)) => Placeholder::Kept(g),
        };
        Ok(into_handle(kept))
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_placeholderFree<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
) {
    guard(&mut env, (), |_| {
        drop(free::<Placeholder>(h));
        Ok(())
    })
}
