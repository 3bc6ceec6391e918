//! Lines into the execution's log.

pub use crate::bindings::faultline::contract::log::Level;
#[cfg(not(all(feature = "testing", not(target_arch = "wasm32"), not(doc))))]
pub use crate::bindings::faultline::contract::log::write;
#[cfg(all(feature = "testing", not(target_arch = "wasm32"), not(doc)))]
pub use crate::testing::host::log::write;

/// Logs at info level.
pub fn info(message: impl AsRef<str>) {
    write(Level::Info, message.as_ref());
}

/// Logs at warn level.
pub fn warn(message: impl AsRef<str>) {
    write(Level::Warn, message.as_ref());
}

/// Logs at error level.
pub fn error(message: impl AsRef<str>) {
    write(Level::Error, message.as_ref());
}

/// Logs at debug level.
pub fn debug(message: impl AsRef<str>) {
    write(Level::Debug, message.as_ref());
}
