//! Every `unsafe` operation of the binding, each with the contract that makes it
//! sound: handles (Rust objects owned by Java ones), direct-buffer memory, and the
//! cached classes and constructor IDs.

use crate::errors::{arg, Res};
use jni::objects::{GlobalRef, JByteBuffer, JClass, JMethodID, JObject, JValue};
use jni::sys::jlong;
use jni::JNIEnv;
use std::sync::OnceLock;

// ---- handles ---------------------------------------------------------------------

/// Moves `v` to the heap and returns its address as a Java `long` handle.
pub(crate) fn into_handle<T: Send + Sync + 'static>(v: T) -> jlong {
    Box::into_raw(Box::new(v)) as jlong
}

/// The object behind a handle.
///
/// Not marked `unsafe` because the JVM's calls are the trust boundary anyway (a
/// native method cannot check a `long`): soundness rests on `Native`'s contract that
/// every handle passed in came from [`into_handle`] with this `T` and has not been
/// given to [`free`]. `io.dynadax.internal.NativeResource` keeps it: it brackets
/// every call and frees only once no call is in flight and none can start.
pub(crate) fn handle<'a, T>(h: jlong) -> &'a T {
    assert!(h != 0, "null handle");
    // SAFETY: per the contract above, `h` is a live `Box<T>`'s address; the
    // reference lives only for the native call, during which it cannot be freed.
    unsafe { &*(h as *const T) }
}

/// Takes back the object behind a handle, once (the contract of [`handle`]).
pub(crate) fn free<T>(h: jlong) -> T {
    assert!(h != 0, "null handle");
    // SAFETY: per [`handle`]'s contract; `NativeResource` calls the free native once.
    *unsafe { Box::from_raw(h as *mut T) }
}

// ---- bytes -----------------------------------------------------------------------

/// `u8` as JNI's `jbyte` (`i8`): same size and alignment, every bit pattern valid.
pub(crate) fn as_jbytes(b: &[u8]) -> &[i8] {
    // SAFETY: see above; the length and lifetime are the input's.
    unsafe { std::slice::from_raw_parts(b.as_ptr().cast(), b.len()) }
}

/// As [`as_jbytes`], for a buffer JNI fills.
pub(crate) fn as_jbytes_mut(b: &mut [u8]) -> &mut [i8] {
    // SAFETY: as above; the borrow is exclusive for its lifetime.
    unsafe { std::slice::from_raw_parts_mut(b.as_mut_ptr().cast(), b.len()) }
}

fn direct_region(env: &JNIEnv<'_>, buf: &JByteBuffer<'_>, off: i32, len: i32) -> Res<*mut u8> {
    let addr = env.get_direct_buffer_address(buf)?;
    let cap = env.get_direct_buffer_capacity(buf)?;
    arg(off >= 0 && len >= 0 && off as usize + len as usize <= cap, || {
        format!("bytes {off}..{} lie outside the direct buffer's {cap}", off as i64 + len as i64)
    })?;
    // SAFETY: `off <= cap`, and the JVM guarantees `addr..addr+cap` is the buffer's memory.
    Ok(unsafe { addr.add(off as usize) })
}

/// Runs `f` on bytes `off..off+len` of a direct buffer, in place.
pub(crate) fn with_direct<R>(
    env: &JNIEnv<'_>,
    buf: &JByteBuffer<'_>,
    off: i32,
    len: i32,
    f: impl FnOnce(&[u8]) -> Res<R>,
) -> Res<R> {
    let p = direct_region(env, buf, off, len)?;
    // SAFETY: the region lies in the buffer's memory (checked above), which stays
    // allocated while the buffer is reachable, and the call's local reference keeps
    // it reachable until the native returns; the slice does not outlive `f`. As with
    // `FileChannel.write`, the bytes are the caller's for the call: Java code that
    // changes them meanwhile gets a torn copy, never memory outside the buffer.
    f(unsafe { std::slice::from_raw_parts(p, len as usize) })
}

/// As [`with_direct`], for bytes the native writes into.
pub(crate) fn with_direct_mut<R>(
    env: &JNIEnv<'_>,
    buf: &JByteBuffer<'_>,
    off: i32,
    len: i32,
    f: impl FnOnce(&mut [u8]) -> Res<R>,
) -> Res<R> {
    let p = direct_region(env, buf, off, len)?;
    // SAFETY: as in `with_direct`; Java's own reads of the region race the fill as
    // they would a `FileChannel.read` into it.
    f(unsafe { std::slice::from_raw_parts_mut(p, len as usize) })
}

/// The address of a direct buffer's memory, for the Java side to keep (with the
/// buffer) and pass back to [`with_address`].
pub(crate) fn buffer_address(env: &JNIEnv<'_>, buf: &JByteBuffer<'_>) -> Res<jlong> {
    Ok(env.get_direct_buffer_address(buf)? as jlong)
}

/// Runs `f` on `len` bytes at `addr`.
///
/// Not `unsafe` for the reason [`handle`] is not: the contract of
/// `Native.logAppendAddress` is that `addr..addr+len` is a direct buffer's memory
/// (from [`buffer_address`]) within its capacity, which the Java caller keeps
/// reachable, and so allocated, for the call (`Log`'s per-thread staging buffer, or
/// the caller's own direct buffer, each held across the call by a reachability fence).
pub(crate) fn with_address<R>(addr: jlong, len: i32, f: impl FnOnce(&[u8]) -> Res<R>) -> Res<R> {
    arg(addr != 0 && len >= 0, || format!("{len} bytes at address {addr:#x}"))?;
    // SAFETY: per the contract above; the slice does not outlive `f`.
    f(unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) })
}

/// A direct `ByteBuffer` over `len` bytes at `ptr` (a mapping's).
///
/// The caller keeps `ptr..ptr+len` mapped while the buffer may be reachable: the
/// binding's mappings become placeholders at close and are unmapped only by the
/// buffer's cleaner, once it is unreachable.
pub(crate) fn mapping_buffer<'l>(env: &mut JNIEnv<'l>, ptr: *mut u8, len: usize) -> Res<JByteBuffer<'l>> {
    // SAFETY: per the contract above, the memory outlives every use of the buffer.
    Ok(unsafe { env.new_direct_byte_buffer(ptr, len) }?)
}

// ---- classes ---------------------------------------------------------------------

/// The binding's classes, looked up once in `JNI_OnLoad` with the loader of the
/// class that loaded the library.
pub(crate) struct Classes {
    record: GlobalRef,
    /// `Record(long, byte[])`: built once per record read, so not looked up per call.
    record_new: JMethodID,
    bytes: GlobalRef,
    probe: GlobalRef,
    status: GlobalRef,
    dax_exception: GlobalRef,
    busy_exception: GlobalRef,
    corrupt_exception: GlobalRef,
    full_exception: GlobalRef,
}

static CLASSES: OnceLock<Classes> = OnceLock::new();

/// The cached classes (always set once the library is loaded).
pub(crate) fn classes() -> &'static Classes {
    CLASSES.get().expect("JNI_OnLoad caches the classes")
}

fn class(c: &GlobalRef) -> &JClass<'static> {
    c.as_obj().into()
}

impl Classes {
    pub(crate) fn init(env: &mut JNIEnv<'_>) -> jni::errors::Result<()> {
        let mut global = |name: &str| -> jni::errors::Result<GlobalRef> {
            let c = env.find_class(name)?;
            env.new_global_ref(c)
        };
        let record = global("io/dynadax/log/Record")?;
        let c = Classes {
            bytes: global("[B")?,
            probe: global("io/dynadax/Probe")?,
            status: global("io/dynadax/Status")?,
            dax_exception: global("io/dynadax/DaxException")?,
            busy_exception: global("io/dynadax/DaxBusyException")?,
            corrupt_exception: global("io/dynadax/log/LogCorruptException")?,
            full_exception: global("io/dynadax/log/LogFullException")?,
            record_new: env.get_method_id(class(&record), "<init>", "(J[B)V")?,
            record,
        };
        let _ = CLASSES.set(c);
        Ok(())
    }

    pub(crate) fn bytes(&self) -> &JClass<'static> {
        class(&self.bytes)
    }
    pub(crate) fn probe(&self) -> &JClass<'static> {
        class(&self.probe)
    }
    pub(crate) fn status(&self) -> &JClass<'static> {
        class(&self.status)
    }
    pub(crate) fn dax_exception(&self) -> &JClass<'static> {
        class(&self.dax_exception)
    }
    pub(crate) fn busy_exception(&self) -> &JClass<'static> {
        class(&self.busy_exception)
    }
    pub(crate) fn corrupt_exception(&self) -> &JClass<'static> {
        class(&self.corrupt_exception)
    }
    pub(crate) fn full_exception(&self) -> &JClass<'static> {
        class(&self.full_exception)
    }

    /// A `Record(lsn, data)`.
    pub(crate) fn record<'l>(&self, env: &mut JNIEnv<'l>, lsn: u64, data: &[u8]) -> Res<JObject<'l>> {
        let bytes = env.byte_array_from_slice(data)?;
        let args = [JValue::Long(lsn as i64).as_jni(), JValue::Object(&bytes).as_jni()];
        // SAFETY: `record_new` is `Record`'s `(J[B)V` constructor, looked up on this
        // class, and the arguments are a long and a byte[], in that order.
        let r = unsafe { env.new_object_unchecked(class(&self.record), self.record_new, &args) }?;
        env.delete_local_ref(bytes)?;
        Ok(r)
    }
}
