//! Lines into the execution's log.

use crate::bindings::faultline::contract::log::{Level, write};

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
