//! Structured logging through the host (WIT interface `log`; list `"log"` in the manifest).
//!
//! The host tags every line with the plugin, hospital and request id and truncates long
//! messages. Use the functions with a ready string, or the macros with `format!` arguments:
//!
//! ```no_run
//! use vtelehealth_plugin_sdk::log;
//! log::info("activated");
//! let count = 3;
//! log::warn!("{count} retries");
//! ```
//!
//! The SDK's panic hook writes panic messages here at error level, so every plugin built
//! with the SDK imports `log`.

use crate::bindings::vtelehealth::platform::log as raw;

pub use raw::Level;

/// Write one line at `level`.
pub fn write(level: Level, message: &str) {
    raw::write(level, message);
}

/// Write one line at trace level.
pub fn trace(message: &str) {
    write(Level::Trace, message);
}

/// Write one line at debug level.
pub fn debug(message: &str) {
    write(Level::Debug, message);
}

/// Write one line at info level.
pub fn info(message: &str) {
    write(Level::Info, message);
}

/// Write one line at warn level.
pub fn warn(message: &str) {
    write(Level::Warn, message);
}

/// Write one line at error level.
pub fn error(message: &str) {
    write(Level::Error, message);
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log_trace {
    ($($arg:tt)*) => { $crate::log::trace(&::std::format!($($arg)*)) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __log_debug {
    ($($arg:tt)*) => { $crate::log::debug(&::std::format!($($arg)*)) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __log_info {
    ($($arg:tt)*) => { $crate::log::info(&::std::format!($($arg)*)) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __log_warn {
    ($($arg:tt)*) => { $crate::log::warn(&::std::format!($($arg)*)) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __log_error {
    ($($arg:tt)*) => { $crate::log::error(&::std::format!($($arg)*)) };
}

/// `log::debug!("{x}")`: format and write at debug level.
pub use crate::__log_debug as debug;
/// `log::error!("{x}")`: format and write at error level.
pub use crate::__log_error as error;
/// `log::info!("{x}")`: format and write at info level.
pub use crate::__log_info as info;
/// `log::trace!("{x}")`: format and write at trace level.
pub use crate::__log_trace as trace;
/// `log::warn!("{x}")`: format and write at warn level.
pub use crate::__log_warn as warn;
