//! The `quotatree` data type and its persistence callbacks: RDB save and
//! load, AOF rewrite, `MEMORY USAGE`, `DEBUG DIGEST-VALUE`, and the price
//! and plan books as RDB aux data. The encodings themselves live in `persist`.

use std::ffi::{CStr, c_void};
use std::os::raw::{c_char, c_int};
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use redis_module::native_types::RedisType;
use redis_module::raw;

use crate::engine::Tree;
use crate::{ctext, persist, plans, prices, stats};

pub static QUOTA_TYPE: RedisType = RedisType::new(
    "quotatree",
    persist::ENCODING_VERSION,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(rdb_load),
        rdb_save: Some(rdb_save),
        aof_rewrite: Some(aof_rewrite),
        free: Some(free),
        mem_usage: Some(mem_usage),
        digest: Some(digest),
        aux_load: Some(aux_load),
        aux_save: Some(aux_save),
        aux_save2: None,
        aux_save_triggers: raw::Aux::Before as i32,
        free_effort: None,
        unlink: None,
        copy: Some(copy),
        defrag: None,
        copy2: None,
        free_effort2: None,
        mem_usage2: None,
        unlink2: None,
    },
);

unsafe extern "C" fn rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    let Ok(buffer) = raw::load_string_buffer(rdb) else { return ptr::null_mut() };
    match persist::decode(buffer.as_ref(), encver) {
        Ok(mut tree) => {
            share_book_plan(&mut tree);
            stats::count_tree(&tree, 1);
            Box::into_raw(Box::new(tree)).cast()
        }
        Err(e) => {
            // SAFETY: `rdb` is the handle of this callback.
            unsafe { ctext::log_io_warning(rdb, &format!("quota: refusing a quotatree from disk: {e}")) };
            ptr::null_mut()
        }
    }
}

/// A tree just decoded shares the book's copy of its plan when it is the
/// same (the plan book loads before the keys, as aux data), so a thousand
/// trees of one plan hold it once; else (the plan changed or went since
/// the tree last took it) the copy of the trees loaded with the same
/// snapshot before it, so idle trees of an old version do not each get
/// their own copy on a restart or a full sync.
pub fn share_book_plan(tree: &mut Tree) {
    let current = plans::current_for(tree);
    tree.share_plan(current.clone());
    if let Some(plan) = tree.plan()
        && current.is_none_or(|current| !Arc::ptr_eq(&current, plan))
    {
        let shared = plans::share_loaded(plan);
        tree.share_plan(Some(shared));
    }
}

unsafe extern "C" fn rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    // SAFETY: Redis hands back the pointer `rdb_load` or `set_value` stored.
    let tree = unsafe { &*value.cast::<Tree>() };
    raw::save_slice(rdb, &persist::encode(tree));
}

unsafe extern "C" fn aof_rewrite(aof: *mut raw::RedisModuleIO, key: *mut raw::RedisModuleString, value: *mut c_void) {
    // SAFETY: as in `rdb_save`.
    let tree = unsafe { &*value.cast::<Tree>() };
    emit_books(aof);
    let bytes = persist::encode(tree);
    // SAFETY: the function pointer is filled in by Redis at load.
    let emit = unsafe { raw::RedisModule_EmitAOF };
    let Some(emit) = emit else { return };
    let (cmd, fmt) = (c"QUOTA.LOADTREE", c"slb");
    // SAFETY: the format "slb" matches the arguments: a RedisModuleString,
    // a long long, and a buffer pointer with its length.
    unsafe {
        emit(
            aof,
            cmd.as_ptr(),
            fmt.as_ptr(),
            key,
            persist::ENCODING_VERSION as std::os::raw::c_longlong,
            bytes.as_ptr().cast::<c_char>(),
            bytes.len(),
        );
    }
}

/// The price book, then the plan book, travel in the RDB as aux data,
/// before the keys (trees loaded after them find their plans).
unsafe extern "C" fn aux_save(rdb: *mut raw::RedisModuleIO, _when: c_int) {
    raw::save_signed(rdb, i64::from(persist::AUX_VERSION));
    let bytes = prices::with_book(|book| persist::encode_book(book));
    raw::save_slice(rdb, &bytes);
    let bytes = plans::with_plans(|book| persist::encode_plans(book));
    raw::save_slice(rdb, &bytes);
}

/// Aux data of version 1 (written before plans) is the price book alone:
/// it loads with an empty plan book.
unsafe extern "C" fn aux_load(rdb: *mut raw::RedisModuleIO, _encver: c_int, _when: c_int) -> c_int {
    let refuse = |e: String| {
        // SAFETY: `rdb` is the handle of this callback.
        unsafe { ctext::log_io_warning(rdb, &format!("quota: refusing the price and plan books from disk: {e}")) };
        raw::REDISMODULE_ERR as c_int
    };
    let (Ok(version), Ok(buffer)) = (raw::load_signed(rdb), raw::load_string_buffer(rdb)) else {
        return raw::REDISMODULE_ERR as c_int;
    };
    let version = i32::try_from(version).unwrap_or(-1);
    if !(1..=persist::AUX_VERSION).contains(&version) {
        return refuse(format!(
            "unknown aux data version {version} (this module reads up to {})",
            persist::AUX_VERSION
        ));
    }
    let book = match persist::decode_book(buffer.as_ref(), persist::PRICE_BOOK_VERSION) {
        Ok(book) => book,
        Err(e) => return refuse(e),
    };
    let plan_book = if version >= 2 {
        let Ok(buffer) = raw::load_string_buffer(rdb) else { return raw::REDISMODULE_ERR as c_int };
        match persist::decode_plans(buffer.as_ref()) {
            Ok(plan_book) => plan_book,
            Err(e) => return refuse(e),
        }
    } else {
        Default::default()
    };
    prices::with_book(|current| *current = book);
    plans::with_plans(|current| *current = plan_book);
    raw::REDISMODULE_OK as c_int
}

/// The process that last wrote the price and plan books into a rewritten
/// AOF. Each AOF rewrite runs in a fresh child process, which writes the
/// books once, with its first tree: they are not keys, and without an RDB
/// preamble (`aof-use-rdb-preamble no`) they would otherwise be lost.
static BOOKS_WRITTEN_BY: AtomicU32 = AtomicU32::new(0);

/// `QUOTA.PRICE SET key json` per price, then `QUOTA.PLAN SET name json`
/// per plan (the canonical JSON names the version, so the plan loads with
/// the version it had), before the first tree's `QUOTA.LOADTREE`.
fn emit_books(aof: *mut raw::RedisModuleIO) {
    if BOOKS_WRITTEN_BY.swap(std::process::id(), Ordering::Relaxed) == std::process::id() {
        return;
    }
    // SAFETY: the function pointer is filled in by Redis at load.
    let Some(emit) = (unsafe { raw::RedisModule_EmitAOF }) else { return };
    // What to write, gathered first so that one call site emits it all.
    let mut lines: Vec<(&CStr, String, String)> = prices::with_book(|book| {
        book.entries().map(|(key, price)| (c"QUOTA.PRICE", key.clone(), price.to_json())).collect()
    });
    plans::with_plans(|book| {
        lines.extend(book.plans().map(|plan| (c"QUOTA.PLAN", plan.name.clone(), plan.to_json().to_string())));
    });
    let (fmt, set) = (c"cbb", c"SET");
    for (cmd, name, json) in &lines {
        // SAFETY: the format "cbb" matches: a C string, then two buffers
        // each given as pointer and length.
        unsafe {
            emit(
                aof,
                cmd.as_ptr(),
                fmt.as_ptr(),
                set.as_ptr(),
                name.as_ptr().cast::<c_char>(),
                name.len(),
                json.as_ptr().cast::<c_char>(),
                json.len(),
            );
        }
    }
}

unsafe extern "C" fn free(value: *mut c_void) {
    // SAFETY: the pointer came from `Box::into_raw` of a `Tree`.
    let tree = unsafe { Box::from_raw(value.cast::<Tree>()) };
    stats::count_tree(&tree, -1);
}

/// `COPY`: a deep copy of the tree.
unsafe extern "C" fn copy(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    // SAFETY: as in `rdb_save`.
    let tree = unsafe { &*value.cast::<Tree>() }.clone();
    stats::count_tree(&tree, 1);
    Box::into_raw(Box::new(tree)).cast()
}

unsafe extern "C" fn mem_usage(value: *const c_void) -> usize {
    // SAFETY: as in `rdb_save`.
    let tree = unsafe { &*value.cast::<Tree>() };
    tree.estimated_bytes()
}

unsafe extern "C" fn digest(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    // SAFETY: as in `rdb_save`.
    let tree = unsafe { &*value.cast::<Tree>() };
    let bytes = persist::encode(tree);
    // SAFETY: the digest functions are filled in by Redis at load.
    unsafe {
        if let (Some(add), Some(end)) = (raw::RedisModule_DigestAddStringBuffer, raw::RedisModule_DigestEndSequence) {
            add(md, bytes.as_ptr().cast::<c_char>().cast_mut(), bytes.len());
            end(md);
        }
    }
}
