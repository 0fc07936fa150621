//! The shared etcd client against a real three-member cluster: a watch resumed after it broke
//! misses nothing and repeats nothing, a compacted revision is an error that says so, the watch
//! goes on through the leader's death, and a lease's keys live while it is kept alive and go
//! when it is revoked or abandoned.

use std::time::Duration;

use tap::fleet::etcd::{Etcd, EtcdError, EtcdSettings, WatchEvent};
use tap_tests::etcd::EtcdCluster;

fn settings(cluster: &EtcdCluster) -> EtcdSettings {
    EtcdSettings {
        endpoints: cluster.endpoints().split(',').map(String::from).collect(),
        request_timeout: Duration::from_secs(5),
        ..EtcdSettings::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn keys_of(events: &[WatchEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            WatchEvent::Put { key, .. } => format!("put {}", String::from_utf8_lossy(key)),
            WatchEvent::Delete { key, .. } => format!("del {}", String::from_utf8_lossy(key)),
        })
        .collect()
}

/// Events until `want` of them arrived, resuming the watch whenever it breaks; bounded.
async fn collect(etcd: &Etcd, prefix: &str, from: i64, want: usize) -> (Vec<String>, i64) {
    let mut seen = Vec::new();
    let mut next = from;
    for _ in 0..50 {
        if seen.len() >= want {
            break;
        }
        let mut w = if let Ok(w) = etcd.watch_prefix(prefix, next).await {
            w
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        loop {
            if let Ok(Ok(events)) = tokio::time::timeout(Duration::from_secs(10), w.next()).await {
                seen.extend(keys_of(&events));
                next = w.resume_revision();
                if seen.len() >= want {
                    break;
                }
            } else {
                next = w.resume_revision();
                break;
            }
        }
    }
    (seen, next)
}

#[test]
fn a_watch_resumes_without_gaps_or_repeats_and_survives_the_leader() {
    let mut cluster = EtcdCluster::start();
    runtime().block_on(async {
        let etcd = Etcd::connect(&settings(&cluster)).await.expect("connect");
        for k in ["a", "b", "c"] {
            etcd.put(&format!("/t/{k}"), b"1", 0).await.unwrap();
        }
        let snap = etcd.get_prefix("/t/").await.unwrap();
        assert_eq!(snap.kvs.len(), 3);
        let from = snap.revision + 1;
        etcd.put("/t/d", b"1", 0).await.unwrap();
        etcd.delete("/t/a").await.unwrap();
        let (seen, next) = collect(&etcd, "/t/", from, 2).await;
        assert_eq!(seen, ["put /t/d", "del /t/a"]);
        // The watch is gone; a change happens; the resumed one sees it, once.
        etcd.put("/t/e", b"1", 0).await.unwrap();
        let (seen, next) = collect(&etcd, "/t/", next, 1).await;
        assert_eq!(seen, ["put /t/e"]);

        // Through the leader's death (the client goes to the other members).
        cluster.kill_leader();
        let mut put = Err(EtcdError::NoEndpoint);
        for _ in 0..20 {
            put = etcd.put("/t/f", b"1", 0).await;
            if put.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        put.expect("a put after the leader died");
        let (seen, _) = collect(&etcd, "/t/", next, 1).await;
        assert_eq!(seen, ["put /t/f"]);

        // A compacted revision says so.
        let rev = etcd.put("/t/g", b"1", 0).await.unwrap();
        cluster.ctl(&["compact", &rev.to_string()]);
        // etcd creates the watch, then cancels it for the compaction.
        let err = match etcd.watch_prefix("/t/", from).await {
            Err(e) => e,
            Ok(mut w) => tokio::time::timeout(Duration::from_secs(10), w.next())
                .await
                .expect("the cancellation within 10 s")
                .unwrap_err(),
        };
        assert!(matches!(err, EtcdError::Compacted { .. }), "{err}");
    });
}

#[test]
fn lease_keys_live_while_kept_alive_and_go_with_the_lease() {
    let cluster = EtcdCluster::start();
    runtime().block_on(async {
        let etcd = Etcd::connect(&settings(&cluster)).await.expect("connect");
        let lease = etcd.grant_lease(Duration::from_secs(2)).await.unwrap();
        etcd.put("/s/kept", b"1", lease.id()).await.unwrap();
        // Three times the time to live: still there, kept alive.
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(etcd.get("/s/kept").await.unwrap().is_some());
        assert_eq!(lease.lost(), None);
        lease.revoke().await.unwrap();
        assert!(etcd.get("/s/kept").await.unwrap().is_none());

        // Abandoned (the agent died): gone after the time to live.
        let lease = etcd.grant_lease(Duration::from_secs(1)).await.unwrap();
        etcd.put("/s/abandoned", b"1", lease.id()).await.unwrap();
        drop(lease);
        let mut gone = false;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if etcd.get("/s/abandoned").await.unwrap().is_none() {
                gone = true;
                break;
            }
        }
        assert!(gone, "an abandoned lease's key outlived it by 10 s");
    });
}
