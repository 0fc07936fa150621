//! Prints the packet printer's cost per packet (`tap::print::bench::run`):
//! `cargo run --release -p tap-userspace --example print_bench [ITERATIONS]`.

fn main() {
    let iterations = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    for r in tap::print::bench::run(iterations) {
        println!(
            "{:>14}  {:<6}  {:7.1} ns/packet",
            r.packets, r.flags, r.ns_per_packet
        );
    }
}
