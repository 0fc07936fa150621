//! The topology itself: two namespaces that can reach each other and nothing else on the wire.
use tap_tests::{Topology, topology::B_V4};

#[test]
fn topology_pings_and_cleans_up() {
    let names;
    {
        let t = Topology::new();
        names = (t.a.name.clone(), t.b.name.clone());
        t.a.sh(&format!("ping -c 1 -W 2 {B_V4} >/dev/null"));
    }
    let list = String::from_utf8(
        std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        !list.contains(&names.0) && !list.contains(&names.1),
        "namespaces left behind: {list}"
    );
}
