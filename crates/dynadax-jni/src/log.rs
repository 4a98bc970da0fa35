//! `io.dynadax.log.Log` and its `Tailer`.

use crate::dax::path;
use crate::errors::{arg, guard, Failure, Res};
use crate::raw::{as_jbytes_mut, buffer_address, classes, free, handle, into_handle, with_address};
use dynadax::log::{Durability, Layout, Log, LogOptions, RecoveryMode, TailMode, Tailer, FRAME_HEADER, HEADER_LEN};
use jni::objects::{JByteArray, JByteBuffer, JClass, JLongArray, JObject, JObjectArray, JString};
use jni::sys::{jboolean, jint, jlong, jobject, jobjectArray};
use jni::JNIEnv;
use std::sync::Mutex;
use std::time::Duration;

fn lsn(v: jlong, what: &str) -> Res<u64> {
    u64::try_from(v).map_err(|_| Failure::Arg(format!("negative {what} {v}")))
}

#[allow(clippy::too_many_arguments)]
fn options(
    dir: &std::path::Path,
    durability: jint,
    recovery: jint,
    tail_mode: jint,
    segment_size: jlong,
    max_record: jlong,
    first_lsn: jlong,
    capacity: jlong,
    scan_sealed: bool,
) -> Res<LogOptions> {
    let bad = |what: &str, v: i64| Failure::Arg(format!("no {what} with ordinal {v}"));
    // An existing log keeps its own segment size and record limit unless told.
    let own = LogOptions::of(dir).ok();
    let segment = match segment_size {
        0 => own.as_ref().map_or(64 << 20, |o| o.segment_size),
        s => lsn(s, "segment size")?,
    };
    let fits = (segment as usize).saturating_sub(HEADER_LEN + FRAME_HEADER + 8);
    let record = match max_record {
        0 => own.as_ref().map_or(1 << 20, |o| o.max_record).min(fits),
        r => lsn(r, "max record")? as usize,
    };
    Ok(LogOptions {
        segment_size: segment,
        max_record: record,
        durability: match durability {
            0 => Durability::Each,
            1 => Durability::Group,
            2 => Durability::None,
            v => return Err(bad("durability", v.into())),
        },
        recovery: match recovery {
            0 => RecoveryMode::Strict,
            1 => RecoveryMode::TolerateTornTail,
            2 => RecoveryMode::PointInTime,
            3 => RecoveryMode::SkipDamaged,
            v => return Err(bad("recovery mode", v.into())),
        },
        tail_mode: match tail_mode {
            0 => TailMode::Auto,
            1 => TailMode::Direct,
            2 => TailMode::Cached,
            v => return Err(bad("tail mode", v.into())),
        },
        first_lsn: lsn(first_lsn, "first LSN")?,
        layout: match capacity {
            0 => Layout::Files,
            c => Layout::SingleFile { capacity: lsn(c, "capacity")? },
        },
        scan_sealed,
        ..LogOptions::default()
    })
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_io_dynadax_internal_Native_logOpen<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    dir: JString<'l>,
    read_only: jboolean,
    durability: jint,
    recovery: jint,
    tail_mode: jint,
    segment_size: jlong,
    max_record: jlong,
    first_lsn: jlong,
    capacity: jlong,
    scan_sealed: jboolean,
) -> jlong {
    guard(&mut env, 0, |env| {
        let dir = path(env, &dir)?;
        let opts = options(
            &dir,
            durability,
            recovery,
            tail_mode,
            segment_size,
            max_record,
            first_lsn,
            capacity,
            scan_sealed != 0,
        )?;
        let log = if read_only != 0 { Log::open_read_only(&dir, opts)? } else { Log::open(&dir, opts)? };
        Ok(into_handle(log))
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_logFree<'l>(mut env: JNIEnv<'l>, _: JClass<'l>, h: jlong) {
    guard(&mut env, (), |_| {
        drop(free::<Log>(h));
        Ok(())
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_logAppend<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    src: JByteArray<'l>,
    off: jint,
    len: jint,
) -> jlong {
    guard(&mut env, -1, |env| {
        // GetByteArrayRegion checks `off + len` against the array (an
        // ArrayIndexOutOfBoundsException), so only the sign needs a look here.
        arg(off >= 0 && len >= 0, || format!("bytes {off}..{} of an array", off as i64 + len as i64))?;
        // Only records over 64 KiB come this way (smaller ones are staged by `Log`
        // and appended from their address), so an allocation each costs little.
        let mut buf = vec![0u8; len as usize];
        env.get_byte_array_region(&src, off, as_jbytes_mut(&mut buf))?;
        Ok(handle::<Log>(h).append(&buf)? as jlong)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_logAppendAddress<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    addr: jlong,
    len: jint,
) -> jlong {
    guard(&mut env, -1, |_| with_address(addr, len, |rec| Ok(handle::<Log>(h).append(rec)? as jlong)))
}

/// The benchmark's Rust turn: the loop a Rust program runs, on the Java program's log.
#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_benchAppendLoop<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    addr: jlong,
    len: jint,
    nanos: jlong,
) -> jlong {
    guard(&mut env, -1, |_| {
        let log = handle::<Log>(h);
        let deadline = std::time::Instant::now() + Duration::from_nanos(nanos.max(0) as u64);
        with_address(addr, len, |rec| {
            let mut n = 0u64;
            while std::time::Instant::now() < deadline {
                for _ in 0..256 {
                    log.append(rec)?;
                }
                n += 256;
            }
            Ok(n as jlong)
        })
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_bufferAddress<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    buf: JByteBuffer<'l>,
) -> jlong {
    guard(&mut env, 0, |env| buffer_address(env, &buf))
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_logAppendBatch<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    records: JObjectArray<'l>,
) -> jlong {
    guard(&mut env, -1, |env| {
        arg(!records.is_null(), || "records is null".into())?;
        let n = env.get_array_length(&records)?;
        let mut owned = Vec::with_capacity(n as usize);
        for i in 0..n {
            let a = JByteArray::from(env.get_object_array_element(&records, i)?);
            arg(!a.is_null(), || format!("record {i} of the batch is null"))?;
            let mut b = vec![0u8; env.get_array_length(&a)? as usize];
            env.get_byte_array_region(&a, 0, as_jbytes_mut(&mut b))?;
            env.delete_local_ref(a)?;
            owned.push(b);
        }
        let refs: Vec<&[u8]> = owned.iter().map(|b| b.as_slice()).collect();
        Ok(handle::<Log>(h).append_batch(&refs)?.start as jlong)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_logRead<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    at: jlong,
) -> jobject {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let data = handle::<Log>(h).read(lsn(at, "LSN")?)?;
        Ok(env.byte_array_from_slice(&data)?.into_raw())
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_logReadBatch<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    from: jlong,
    max_records: jint,
    max_bytes: jlong,
    first_out: JLongArray<'l>,
) -> jobjectArray {
    guard(&mut env, std::ptr::null_mut(), |env| {
        arg(max_records > 0 && max_bytes > 0, || format!("batch of {max_records} records, {max_bytes} bytes"))?;
        let log = handle::<Log>(h);
        let mut first = lsn(from, "LSN")?.max(log.first_lsn());
        if first >= log.durable_lsn() {
            // A reader of another process's log sees what the writer added only on
            // a refresh (a no-op for the writer's own log).
            log.refresh()?;
            first = first.max(log.first_lsn());
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for r in log.range(first, first.saturating_add(max_records as u64)) {
            match r {
                Ok((_, data)) => {
                    bytes += data.len() as u64;
                    out.push(data);
                    if bytes >= max_bytes as u64 {
                        break;
                    }
                }
                // Hand out what came before a damaged record; the next batch starts
                // at it and throws.
                Err(_) if !out.is_empty() => break,
                Err(e) => return Err(e.into()),
            }
        }
        let arr = env.new_object_array(out.len() as jint, classes().bytes(), JObject::null())?;
        for (i, data) in out.iter().enumerate() {
            let b = env.byte_array_from_slice(data)?;
            env.set_object_array_element(&arr, i as jint, &b)?;
            env.delete_local_ref(b)?;
        }
        if !first_out.is_null() {
            env.set_long_array_region(&first_out, 0, &[first as jlong])?;
        }
        Ok(arr.into_raw())
    })
}

macro_rules! log_getter {
    ($name:ident, $body:expr) => {
        #[no_mangle]
        pub extern "system" fn $name<'l>(mut env: JNIEnv<'l>, _: JClass<'l>, h: jlong) -> jlong {
            guard(&mut env, -1, |_| {
                let f: fn(&Log) -> Res<u64> = $body;
                Ok(f(handle::<Log>(h))? as jlong)
            })
        }
    };
}

log_getter!(Java_io_dynadax_internal_Native_logFirstLsn, |l| Ok(l.first_lsn()));
log_getter!(Java_io_dynadax_internal_Native_logDurableLsn, |l| Ok(l.durable_lsn()));
log_getter!(Java_io_dynadax_internal_Native_logNextLsn, |l| Ok(l.next_lsn()));
log_getter!(Java_io_dynadax_internal_Native_logSync, |l| Ok(l.sync()?));

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_logSeal<'l>(mut env: JNIEnv<'l>, _: JClass<'l>, h: jlong) {
    guard(&mut env, (), |_| Ok(handle::<Log>(h).seal()?))
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_logRefresh<'l>(mut env: JNIEnv<'l>, _: JClass<'l>, h: jlong) {
    guard(&mut env, (), |_| Ok(handle::<Log>(h).refresh()?))
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_logPurgeBefore<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    at: jlong,
) -> jlong {
    guard(&mut env, -1, |_| Ok(handle::<Log>(h).purge_before(lsn(at, "LSN")?)? as jlong))
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_logTruncateAfter<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    at: jlong,
) {
    guard(&mut env, (), |_| Ok(handle::<Log>(h).truncate_after(lsn(at, "LSN")?)?))
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_tailOpen<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    from: jlong,
) -> jlong {
    guard(&mut env, 0, |_| Ok(into_handle(Mutex::new(handle::<Log>(h).tail(lsn(from, "LSN")?)))))
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_tailFree<'l>(mut env: JNIEnv<'l>, _: JClass<'l>, h: jlong) {
    guard(&mut env, (), |_| {
        drop(free::<Mutex<Tailer>>(h));
        Ok(())
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_tailPoll<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    timeout_nanos: jlong,
) -> jobject {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let timeout = u64::try_from(timeout_nanos).ok().map(Duration::from_nanos);
        let next = handle::<Mutex<Tailer>>(h).lock().unwrap_or_else(|e| e.into_inner()).next_timeout(timeout)?;
        Ok(match next {
            Some((lsn, data)) => classes().record(env, lsn, &data)?.into_raw(),
            None => std::ptr::null_mut(),
        })
    })
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_tailLag<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
) -> jlong {
    guard(&mut env, -1, |_| Ok(handle::<Mutex<Tailer>>(h).lock().unwrap_or_else(|e| e.into_inner()).lag() as jlong))
}

#[no_mangle]
pub extern "system" fn Java_io_dynadax_internal_Native_tailPosition<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
) -> jlong {
    guard(
        &mut env,
        -1,
        |_| Ok(handle::<Mutex<Tailer>>(h).lock().unwrap_or_else(|e| e.into_inner()).position() as jlong),
    )
}
