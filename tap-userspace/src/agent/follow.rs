//! Interfaces chosen by name, shell glob or `any`, followed as they come and go: how the agent
//! picks each tap's interfaces from the rtnetlink table ([`crate::kernel::links`]) and accounts
//! for those it should be attached to and is not ([`super::detached`]), and the same for one
//! `tap capture -i 'veth*'` or `-i any` ([`follow`]).

use std::{sync::Arc, time::Instant};

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{
    RESYNC, TICK,
    detached::{Detached, Reason},
};
use crate::{
    kernel::links::{Link, LinkError, Links},
    model::{Hook, Interface},
    pipeline::{
        live::{AttachmentState, LiveStats},
        run::Control,
    },
    settings::agent_file::glob_match,
};

pub use crate::settings::rules::{ANY, follows};

/// The interfaces `patterns` select among `links`: by name or glob (fnmatch), and for `any`
/// every interface that is up (loopback included, as tcpdump's `any`), by index.
#[must_use]
pub fn select(links: &[Link], patterns: &[String]) -> Vec<Interface> {
    links
        .iter()
        .filter(|l| {
            patterns.iter().any(|p| {
                if p == ANY {
                    l.up
                } else {
                    glob_match(p, &l.name)
                }
            })
        })
        .map(|l| Interface {
            name: l.name.clone(),
            ifindex: l.ifindex,
        })
        .collect()
}

/// The interfaces of `wanted` that not every hook of `hooks` is attached to, with why: `down`
/// when the tap is down, else what `state` says (starting, an attach error, on its way).
#[must_use]
pub fn missing(
    wanted: &[Interface],
    hooks: &[Hook],
    state: &AttachmentState,
    down: Option<&Reason>,
) -> Vec<(String, Reason)> {
    wanted
        .iter()
        .filter(|i| {
            !hooks
                .iter()
                .all(|h| state.attached.contains(&(i.ifindex, *h)))
        })
        .map(|i| {
            let reason = match down {
                Some(r) => r.clone(),
                None if !state.ready => Reason::Starting,
                None => state
                    .errors
                    .iter()
                    .find(|(name, _)| *name == i.name)
                    .map_or(Reason::Pending, |(_, e)| Reason::AttachFailed(e.clone())),
            };
            (i.name.clone(), reason)
        })
        .collect()
}

/// Follows the interfaces `patterns` select for one capture, as the agent does for a tap: link
/// events and a dump every [`RESYNC`] tell it what exists, every change is sent as
/// [`Control::Interfaces`], and every [`TICK`] the time an interface is not attached is
/// accounted in `detached` (logged as the agent logs it, named `tap` in the logs). Ends when
/// the capture stops taking control messages.
///
/// # Errors
/// The interface table cannot be read to begin with.
pub async fn follow(
    tap: String,
    patterns: Vec<String>,
    hooks: Vec<Hook>,
    control: mpsc::Sender<Control>,
    live: Arc<LiveStats>,
    detached: Arc<Detached>,
) -> Result<(), LinkError> {
    let mut links = Links::open().await?;
    let mut sent: Option<Vec<Interface>> = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resync = tokio::time::interval(RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync.reset();
    let mut following = true;
    loop {
        let want = select(&links.links(), &patterns);
        if sent.as_ref() != Some(&want) {
            match control.try_send(Control::Interfaces(want.clone())) {
                Ok(()) => {
                    info!(
                        interfaces = want.len(),
                        "following: the interfaces matched changed"
                    );
                    sent = Some(want.clone());
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Ok(()),
                // Loading still: tried again at the next tick.
                Err(mpsc::error::TrySendError::Full(_)) => {}
            }
        }
        tokio::select! {
            () = control.closed() => return Ok(()),
            changed = links.changed(), if following => {
                if let Err(e) = changed {
                    warn!(error = %e, "following the interfaces failed: nothing changes until the next resync");
                    following = false;
                }
            }
            _ = resync.tick() => match links.resync().await {
                Ok(_) => following = true,
                Err(e) => warn!(error = %e, "reading the interfaces failed: the capture stays attached as it is"),
            },
            _ = tick.tick() => {
                let state = live.attachment_state();
                detached.update(&tap, Instant::now(), &missing(&want, &hooks, &state, None));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(ifindex: u32, name: &str, up: bool) -> Link {
        Link {
            ifindex,
            name: name.into(),
            up,
            running: up,
            loopback: name == "lo",
        }
    }

    #[test]
    fn any_is_every_interface_up_and_globs_go_by_name() {
        let links = [
            link(1, "lo", true),
            link(2, "eth0", true),
            link(3, "veth-a", false),
            link(4, "veth-b", true),
        ];
        let names = |p: &[&str]| -> Vec<String> {
            let p: Vec<String> = p.iter().map(|s| (*s).to_string()).collect();
            select(&links, &p).into_iter().map(|i| i.name).collect()
        };
        assert_eq!(names(&["any"]), ["lo", "eth0", "veth-b"]);
        assert_eq!(names(&["veth*"]), ["veth-a", "veth-b"]);
        assert_eq!(names(&["eth0", "veth-?"]), ["eth0", "veth-a", "veth-b"]);
        assert!(follows(&["any".into()]) && follows(&["vm*".into()]));
        assert!(!follows(&["eth0".into(), "lo".into()]));
    }

    #[test]
    fn missing_says_why() {
        let wanted = [
            Interface {
                name: "a".into(),
                ifindex: 5,
            },
            Interface {
                name: "b".into(),
                ifindex: 6,
            },
        ];
        let hooks = [Hook::TcIngress, Hook::TcEgress];
        let mut state = AttachmentState {
            attached: vec![
                (5, Hook::TcIngress),
                (5, Hook::TcEgress),
                (6, Hook::TcIngress),
            ],
            errors: vec![("b".into(), "EBUSY".into())],
            ready: true,
        };
        assert_eq!(
            missing(&wanted, &hooks, &state, None),
            [("b".to_string(), Reason::AttachFailed("EBUSY".into()))]
        );
        state.ready = false;
        assert_eq!(
            missing(&wanted, &hooks, &state, None),
            [("b".to_string(), Reason::Starting)]
        );
    }
}
