//! Sinks: where batches go. Each sink owns its output.

pub mod pcap;

use std::io;

use crate::drain::Batch;

/// A consumer of packet batches. Runs on the writer thread, so it may block.
pub trait Sink: Send {
    /// Writes every packet of the batch. Returns the bytes written.
    fn write_batch(&mut self, batch: &Batch) -> io::Result<u64>;
    /// Pushes buffered data to the output (called when no batch is waiting).
    fn flush(&mut self) -> io::Result<()>;
    /// Flushes and closes the output.
    fn finish(self: Box<Self>) -> io::Result<()>;
}
