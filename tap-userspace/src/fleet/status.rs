//! What an agent realized of a session, written under the agent's lease at
//! `ROOT/v1/status/TENANT/NAME/HOST`: it disappears when the agent dies or loses etcd for longer
//! than the lease's time to live.

use serde::{Deserialize, Serialize};

/// Largest status value read back, in bytes.
pub const MAX_STATUS_BYTES: usize = 64 * 1024;

/// How a session stands on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Attached: packets of the source are being mirrored from here.
    Active,
    /// The source is here but the session may not be realized (ownership); `error` says why.
    Refused,
    /// The value under the session's key is not a valid session; `error` says why.
    Invalid,
    /// Realizing it failed (attach, filter limits, target); `error` says why.
    Error,
}

impl State {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Refused => "refused",
            State::Invalid => "invalid",
            State::Error => "error",
        }
    }
}

/// One interface a session is attached to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInterface {
    pub name: String,
    /// `tc-ingress`, `tc-egress`.
    pub hooks: Vec<String>,
}

/// Packet counters of one session on one host, since it was realized there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Packets mirrored to the target.
    pub packets: u64,
    /// Bytes of them, as captured (after the snap length).
    pub bytes: u64,
    /// Packets selected for this session but lost (ring full, queue full, send errors).
    pub dropped: u64,
}

impl std::ops::AddAssign for Counters {
    fn add_assign(&mut self, o: Self) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.dropped += o.dropped;
    }
}

/// The status value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// [`super::session::FORMAT_VERSION`].
    pub version: u32,
    pub host: String,
    /// `TENANT/NAME`, or the key as found for an invalid one.
    pub session: String,
    pub state: State,
    #[serde(default)]
    pub interfaces: Vec<StatusInterface>,
    #[serde(default)]
    pub counters: Counters,
    /// The last error, in one line.
    #[serde(default)]
    pub error: Option<String>,
    /// When the agent wrote it, milliseconds since the Unix epoch.
    pub updated_ms: u64,
}

impl Status {
    /// Reads a status value (written by an agent, or by anyone with write access): bounded.
    ///
    /// # Errors
    /// Why it is not a status, in one line.
    pub fn decode(value: &[u8]) -> Result<Self, String> {
        if value.len() > MAX_STATUS_BYTES {
            return Err(format!(
                "{} bytes; a status is at most {MAX_STATUS_BYTES}",
                value.len()
            ));
        }
        serde_json::from_slice(value).map_err(|e| format!("not status JSON: {e}"))
    }

    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a Status always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = Status {
            version: 1,
            host: "hv1".into(),
            session: "acme/web".into(),
            state: State::Active,
            interfaces: vec![StatusInterface {
                name: "vm1p".into(),
                hooks: vec!["tc-ingress".into(), "tc-egress".into()],
            }],
            counters: Counters {
                packets: 3,
                bytes: 300,
                dropped: 0,
            },
            error: None,
            updated_ms: 1,
        };
        assert_eq!(Status::decode(s.to_json().as_bytes()).unwrap(), s);
        assert!(Status::decode(b"{").is_err());
        assert!(Status::decode(&vec![b' '; MAX_STATUS_BYTES + 1]).is_err());
    }
}
