//! The live status line of `tap capture` on a terminal: packets, rate, drops, bytes, redrawn in
//! place twice a second.

use std::{
    io::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

use tap::{agent::control::human_bytes, pipeline::live::LiveStats};

const EVERY: Duration = Duration::from_millis(500);

pub(crate) async fn run(live: Arc<LiveStats>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<(Instant, u64)> = None;
    loop {
        tick.tick().await;
        let s = live.snapshot();
        let now = Instant::now();
        let rate = match last {
            Some((at, n)) => {
                (s.read_packets.saturating_sub(n)) as f64
                    / now.duration_since(at).as_secs_f64().max(1e-3)
            }
            None => 0.0,
        };
        last = Some((now, s.read_packets));
        let dropped = s.kernel.ring_full + s.writer_dropped;
        let line = format!(
            "{} packets, {:.0} pkt/s, {} dropped, {} captured",
            s.read_packets,
            rate,
            dropped,
            human_bytes(s.read_bytes)
        );
        let mut err = std::io::stderr().lock();
        // Carriage return, the line, then clear what a longer previous line left.
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
    }
}

/// Removes the status line before the summary.
pub(crate) fn clear() {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[K");
    let _ = err.flush();
}
