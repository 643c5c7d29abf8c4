//! The one clock: wall-clock time in Unix epoch milliseconds, the unit of every stored and
//! transmitted timestamp. Split at this one function because `SystemTime::now` panics in the
//! browser's WASM, where the JavaScript clock is the one to read.

/// Now, in Unix epoch milliseconds (the browser's clock in the WASM client).
#[cfg(feature = "hydrate")]
#[allow(clippy::cast_possible_truncation)]
pub fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

/// Now, in Unix epoch milliseconds.
#[cfg(not(feature = "hydrate"))]
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
