//! The memory one node needs, in one value.

use core::fmt;

use subnodesync_core::Buffers;

/// A node's buffers: put one in a `StaticCell` or in the node's task, and [`split`](Self::split)
/// it into the core's [`Buffers`] and the handlers' scratch.
///
/// The defaults fit the default configuration with a few custom metrics on a 64 KiB part:
/// `RX` bounds the largest command the node takes, `TX` must hold the register message, `OUTBOX`
/// holds every QoS 1 message until its PUBACK (the node checks `TX` and `OUTBOX` at
/// construction), `SCRATCH` bounds a handler's result `data`, and `DESIRED` holds the desired
/// state's two documents and the reasons for rejected settings.
pub struct Resources<
    const RX: usize = 1024,
    const TX: usize = 1024,
    const OUTBOX: usize = 4096,
    const SCRATCH: usize = 256,
    const DESIRED: usize = 1024,
> {
    rx: [u8; RX],
    tx: [u8; TX],
    outbox: [u8; OUTBOX],
    scratch: [u8; SCRATCH],
    desired: [u8; DESIRED],
}

impl<const RX: usize, const TX: usize, const OUTBOX: usize, const SCRATCH: usize, const DESIRED: usize>
    Resources<RX, TX, OUTBOX, SCRATCH, DESIRED>
{
    /// Zeroed buffers; `const`, so they can live in a `static`.
    pub const fn new() -> Self {
        Self { rx: [0; RX], tx: [0; TX], outbox: [0; OUTBOX], scratch: [0; SCRATCH], desired: [0; DESIRED] }
    }

    /// The core's buffers, for `Node::new`, and the scratch for [`run`](crate::run).
    pub fn split(&mut self) -> (Buffers<'_>, &mut [u8]) {
        (Buffers::new(&mut self.rx, &mut self.tx, &mut self.outbox).with_desired(&mut self.desired), &mut self.scratch)
    }
}

impl<const RX: usize, const TX: usize, const OUTBOX: usize, const SCRATCH: usize, const DESIRED: usize> fmt::Debug
    for Resources<RX, TX, OUTBOX, SCRATCH, DESIRED>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Sizes, not kilobytes of buffer contents.
        f.debug_struct("Resources")
            .field("rx", &RX)
            .field("tx", &TX)
            .field("outbox", &OUTBOX)
            .field("scratch", &SCRATCH)
            .field("desired", &DESIRED)
            .finish()
    }
}

impl<const RX: usize, const TX: usize, const OUTBOX: usize, const SCRATCH: usize, const DESIRED: usize> Default
    for Resources<RX, TX, OUTBOX, SCRATCH, DESIRED>
{
    fn default() -> Self {
        Self::new()
    }
}
