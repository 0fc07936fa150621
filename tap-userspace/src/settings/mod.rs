//! What the user asked for, from every front door: one vocabulary ([`crate::model`]), one set
//! of raw settings ([`raw`]) that each reader fills, one rule book ([`rules`]) that turns them
//! into validated settings, and readers that only translate: the command line ([`flags`]),
//! the agent's TOML file ([`agent_file`]) and a fleet session's JSON ([`session`]).
//!
//! A new front door is a reader: it fills [`raw::RawCapture`] (or a [`document`] for a tap),
//! calls [`rules::capture`], and words a [`SettingError`] by mapping its [`Key`] to its own
//! location. A new setting is a field of the raw settings, a [`Key`], and one rule.

pub mod agent_file;
mod document;
pub mod error;
pub mod flags;
pub mod raw;
pub mod rules;
pub mod session;
pub mod session_flags;
#[cfg(test)]
mod tests;

pub use error::{Key, Reason, SettingError};
pub use raw::{Purpose, RawCapture, RawFilter};
