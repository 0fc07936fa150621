//! Small pieces every layer uses: bounded reads, the one safe-create path, short excerpts of
//! echoed input, bounded listeners and dropping privileges.

pub mod bounded_read;
pub mod endpoint;
pub mod excerpt;
pub mod listener;
pub mod localtime;
pub mod privilege;
pub mod safe_create;
