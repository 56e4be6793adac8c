//! The `quotatree` data type and its persistence callbacks: RDB save and
//! load, AOF rewrite, `MEMORY USAGE`, `DEBUG DIGEST-VALUE`. The encoding
//! itself lives in `persist`.

use std::ffi::{CString, c_void};
use std::os::raw::{c_char, c_int};
use std::ptr;

use redis_module::native_types::RedisType;
use redis_module::raw;

use crate::engine::Tree;
use crate::persist;

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
        aux_load: None,
        aux_save: None,
        aux_save2: None,
        aux_save_triggers: 0,
        free_effort: None,
        unlink: None,
        copy: None,
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
        Ok(tree) => Box::into_raw(Box::new(tree)).cast(),
        Err(e) => {
            redis_module::logging::log_warning(format!("quota: refusing a quotatree from disk: {e}"));
            ptr::null_mut()
        }
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
    let bytes = persist::encode(tree);
    // SAFETY: the function pointer is filled in by Redis at load.
    let emit = unsafe { raw::RedisModule_EmitAOF };
    let (Some(emit), Ok(cmd), Ok(fmt)) = (emit, CString::new("QUOTA.LOADTREE"), CString::new("slb")) else {
        return;
    };
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

unsafe extern "C" fn free(value: *mut c_void) {
    // SAFETY: the pointer came from `Box::into_raw` of a `Tree`.
    drop(unsafe { Box::from_raw(value.cast::<Tree>()) });
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
