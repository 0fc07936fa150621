//! `-Z USER`, like tcpdump's: once the programs are attached and the ring is open, tap runs as
//! USER (its supplementary groups, its group, its user id) and creates its files as USER.
//!
//! What stays usable afterwards: the BPF maps and links through the file descriptors already
//! open (reading counters, replacing the filter, draining the ring; kernels from 6.5 check
//! privileges when a map or program is created, not on each use of its descriptor), and
//! detaching, which is closing the links. What needs USER's own rights: the output directory,
//! a `-F` file re-read on SIGHUP, the post-rotate command.

use std::ffi::{CStr, CString};

/// Errors resolving a user or switching to it.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("unknown user '{user}' for -Z")]
    UnknownUser { user: String },
    #[error("looking up user '{user}' failed: {source}")]
    Lookup {
        user: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot switch to user '{user}' ({op}): {source}")]
    Switch {
        user: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("switched to user '{user}' but root privileges could be regained; stopping")]
    NotDropped { user: String },
}

/// A user to run as, resolved before anything is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// Looks `user` up in the password database.
    pub fn lookup(user: &str) -> Result<Self, PrivilegeError> {
        let unknown = || PrivilegeError::UnknownUser {
            user: user.to_string(),
        };
        let name = CString::new(user).map_err(|_| unknown())?;
        let mut buf = vec![0u8; 1024];
        loop {
            // SAFETY: passwd is plain old data that getpwnam_r fills in.
            let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            // SAFETY: every pointer is valid for the call; buf outlives the use of pwd's strings
            // (none are kept).
            let rc = unsafe {
                libc::getpwnam_r(
                    name.as_ptr(),
                    &mut pwd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut found,
                )
            };
            match rc {
                0 if found.is_null() => return Err(unknown()),
                0 => {
                    return Ok(Self {
                        user: user.to_string(),
                        uid: pwd.pw_uid,
                        gid: pwd.pw_gid,
                    });
                }
                libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
                e => {
                    return Err(PrivilegeError::Lookup {
                        user: user.to_string(),
                        source: std::io::Error::from_raw_os_error(e),
                    });
                }
            }
        }
    }

    /// Takes on the user's groups, group and user id, for every thread of the process (the C
    /// library applies set*id calls to all threads), and checks root cannot be regained.
    pub fn switch(&self) -> Result<(), PrivilegeError> {
        let fail = |op: &'static str| PrivilegeError::Switch {
            user: self.user.clone(),
            op,
            source: std::io::Error::last_os_error(),
        };
        let name = CString::new(self.user.as_str()).map_err(|_| PrivilegeError::UnknownUser {
            user: self.user.clone(),
        })?;
        let name: &CStr = &name;
        // SAFETY: a valid C string; initgroups reads the group database and calls setgroups.
        if unsafe { libc::initgroups(name.as_ptr(), self.gid) } != 0 {
            return Err(fail("initgroups"));
        }
        // SAFETY: no memory is involved.
        if unsafe { libc::setgid(self.gid) } != 0 {
            return Err(fail("setgid"));
        }
        // SAFETY: no memory is involved.
        if unsafe { libc::setuid(self.uid) } != 0 {
            return Err(fail("setuid"));
        }
        // SAFETY: no memory is involved; succeeding here would mean the switch did not stick.
        if self.uid != 0 && unsafe { libc::setuid(0) } == 0 {
            return Err(PrivilegeError::NotDropped {
                user: self.user.clone(),
            });
        }
        tracing::info!(user = %self.user, uid = self.uid, gid = self.gid, "running as an unprivileged user");
        Ok(())
    }
}

impl RunAs {
    /// Runs `f` with the user's effective ids and groups, then takes root's back: to create a
    /// file before attaching (`--stats-json`) exactly as the user could after `-Z`, so a path
    /// the user cannot write fails before anything is attached, and the file is theirs. A
    /// process that is not root runs `f` as it is.
    pub fn as_effective<T>(&self, f: impl FnOnce() -> T) -> Result<T, PrivilegeError> {
        // SAFETY: no memory is involved.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(f());
        }
        let fail = |op: &'static str| PrivilegeError::Switch {
            user: self.user.clone(),
            op,
            source: std::io::Error::last_os_error(),
        };
        let name = CString::new(self.user.as_str()).map_err(|_| PrivilegeError::UnknownUser {
            user: self.user.clone(),
        })?;
        // Root's groups now, to restore.
        // SAFETY: a null list of size 0 asks for the count only.
        let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
        let mut saved = vec![0 as libc::gid_t; usize::try_from(n).unwrap_or(0)];
        // SAFETY: saved holds n entries.
        let n = unsafe { libc::getgroups(n, saved.as_mut_ptr()) };
        if n < 0 {
            return Err(fail("getgroups"));
        }
        saved.truncate(usize::try_from(n).unwrap_or(0));
        // SAFETY: no memory is involved.
        let saved_gid = unsafe { libc::getegid() };
        // SAFETY: a valid C string; initgroups reads the group database and calls setgroups.
        if unsafe { libc::initgroups(name.as_ptr(), self.gid) } != 0 {
            return Err(fail("initgroups"));
        }
        let restore = || {
            // SAFETY: no memory is involved, and saved is a valid list of its length; the
            // saved set-user-ID stays 0, so root's ids come back.
            unsafe {
                libc::seteuid(0);
                libc::setegid(saved_gid);
                libc::setgroups(saved.len(), saved.as_ptr());
            }
        };
        // SAFETY: no memory is involved.
        if unsafe { libc::setegid(self.gid) } != 0 {
            let e = fail("setegid");
            restore();
            return Err(e);
        }
        // SAFETY: no memory is involved.
        if unsafe { libc::seteuid(self.uid) } != 0 {
            let e = fail("seteuid");
            restore();
            return Err(e);
        }
        let out = f();
        restore();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve() {
        assert_eq!(
            RunAs::lookup("root").unwrap(),
            RunAs {
                user: "root".into(),
                uid: 0,
                gid: 0
            }
        );
        assert!(matches!(
            RunAs::lookup("no-such-user-tap"),
            Err(PrivilegeError::UnknownUser { .. })
        ));
        assert!(matches!(
            RunAs::lookup("nul\0user"),
            Err(PrivilegeError::UnknownUser { .. })
        ));
    }
}
