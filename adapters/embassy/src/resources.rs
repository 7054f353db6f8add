//! The memory one node needs, in one value.

use core::fmt;

use subnodesync_core::Buffers;

/// A node's buffers: put one in a `StaticCell` or in the node's task, and [`split`](Self::split)
/// it into the core's [`Buffers`] and the handlers' scratch.
///
/// The defaults fit the default configuration with a few custom metrics on a 64 KiB part:
/// `RX` bounds the largest command the node takes, `TX` must hold the register message, `OUTBOX`
/// holds every QoS 1 message until its PUBACK (the node checks `TX` and `OUTBOX` at
/// construction), and `SCRATCH` bounds a handler's result `data`.
pub struct Resources<
    const RX: usize = 1024,
    const TX: usize = 1024,
    const OUTBOX: usize = 4096,
    const SCRATCH: usize = 256,
> {
    rx: [u8; RX],
    tx: [u8; TX],
    outbox: [u8; OUTBOX],
    scratch: [u8; SCRATCH],
}

impl<const RX: usize, const TX: usize, const OUTBOX: usize, const SCRATCH: usize> Resources<RX, TX, OUTBOX, SCRATCH> {
    /// Zeroed buffers; `const`, so they can live in a `static`.
    pub const fn new() -> Self {
        Self { rx: [0; RX], tx: [0; TX], outbox: [0; OUTBOX], scratch: [0; SCRATCH] }
    }

    /// The core's buffers, for `Node::new`, and the scratch for [`run`](crate::run).
    pub fn split(&mut self) -> (Buffers<'_>, &mut [u8]) {
        (Buffers::new(&mut self.rx, &mut self.tx, &mut self.outbox), &mut self.scratch)
    }
}

impl<const RX: usize, const TX: usize, const OUTBOX: usize, const SCRATCH: usize> fmt::Debug
    for Resources<RX, TX, OUTBOX, SCRATCH>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Sizes, not kilobytes of buffer contents.
        f.debug_struct("Resources")
            .field("rx", &RX)
            .field("tx", &TX)
            .field("outbox", &OUTBOX)
            .field("scratch", &SCRATCH)
            .finish()
    }
}

impl<const RX: usize, const TX: usize, const OUTBOX: usize, const SCRATCH: usize> Default
    for Resources<RX, TX, OUTBOX, SCRATCH>
{
    fn default() -> Self {
        Self::new()
    }
}
