//! What the application hands the adapter: a way to connect, command handlers and metrics.

use core::fmt;
use core::future::Future;

use embedded_io_async::{Read, Write};
use subnodesync_core::{Command, Metrics, Outcome, RawJson, Rejection};

/// Opens one connection to the broker each time the core asks for one.
///
/// This is the seam for the network stack and for TLS: return an embassy-net `TcpSocket`
/// connected to the broker, or an `embedded-tls` `TlsConnection` that has finished its handshake
/// on top of one. The connection may borrow the connector (socket and TLS record buffers live
/// there); the adapter drops it before asking for the next one.
///
/// Any `FnMut() -> impl Future<Output = Result<T, E>>` with `T: Read + Write` is a connector,
/// for stacks whose connections own their buffers.
// Embassy executors are single-threaded: the futures need no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait Connector {
    /// An open connection.
    type Connection<'c>: Read + Write
    where
        Self: 'c;
    /// Why a connection could not be opened (no route, refused, TLS handshake failed, ...).
    type Error: fmt::Debug;

    /// Opens a connection to the broker. The core bounds how long this may take (its
    /// `connect_timeout`): a connect still pending then is dropped.
    async fn connect(&mut self) -> Result<Self::Connection<'_>, Self::Error>;
}

impl<F, Fut, T, E> Connector for F
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    T: Read + Write,
    E: fmt::Debug,
{
    type Connection<'c>
        = T
    where
        F: 'c;
    type Error = E;

    async fn connect(&mut self) -> Result<T, E> {
        self().await
    }
}

/// Runs one application command.
pub trait Handler {
    /// Runs `command` to completion and says how it ended. `scratch` is room for the result's
    /// `data` (JSON text, e.g. written with `subnodesync_core::Writer`); the
    /// outcome may borrow it or `self`.
    ///
    /// It runs inside the node's task, which reads nothing meanwhile: keep it well under the
    /// keep-alive interval. Long work belongs to another task.
    fn handle<'s>(&'s mut self, command: &Command<'_>, scratch: &'s mut [u8]) -> Outcome<'s>;
}

/// Applies one application setting of the desired state (PROTOCOL.md §15).
///
/// Any `FnMut(RawJson<'_>) -> Result<(), Rejection>` is one.
pub trait Setting {
    /// Applies `value` (a JSON scalar: read it with `deserialize` or `as_escaped_str`), or says
    /// why not. It runs inside the node's task, for every setting in effect each time the
    /// desired state changes: keep it short.
    fn apply(&mut self, value: RawJson<'_>) -> Result<(), Rejection>;
}

impl<F: FnMut(RawJson<'_>) -> Result<(), Rejection>> Setting for F {
    fn apply(&mut self, value: RawJson<'_>) -> Result<(), Rejection> {
        self(value)
    }
}

/// The application's command handlers by name, at most `N` of them, and its settings by key,
/// at most `S`: no allocation.
pub struct Handlers<'h, const N: usize, const S: usize = 4> {
    table: heapless::Vec<(&'h str, &'h mut dyn Handler), N>,
    settings: heapless::Vec<(&'h str, &'h mut dyn Setting), S>,
}

/// [`Handlers::add`] or [`Handlers::add_setting`] found its table full: raise its capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandlersFull;

impl fmt::Display for HandlersFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("handler table is full")
    }
}

impl<'h, const N: usize, const S: usize> Handlers<'h, N, S> {
    /// Empty tables: the node then answers only the built-in commands and applies only the
    /// built-in `heartbeat_interval`.
    pub const fn new() -> Self {
        Self { table: heapless::Vec::new(), settings: heapless::Vec::new() }
    }

    /// Registers `setting` for the desired-state key `key`; a second one for a key replaces
    /// the first. Keys nobody registered are reported as rejected.
    pub fn add_setting(&mut self, key: &'h str, setting: &'h mut dyn Setting) -> Result<(), HandlersFull> {
        match self.settings.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = setting,
            None => self.settings.push((key, setting)).map_err(|_| HandlersFull)?,
        }
        Ok(())
    }

    /// Applies one setting through its registered [`Setting`].
    pub(crate) fn apply_setting(&mut self, key: &str, value: RawJson<'_>) -> Result<(), Rejection> {
        match self.settings.iter_mut().find(|(k, _)| *k == key) {
            Some((_, setting)) => setting.apply(value),
            None => Err(Rejection::new("unknown setting")),
        }
    }

    /// Registers `handler` for the command `name`; a second handler for a name replaces the
    /// first.
    pub fn add(&mut self, name: &'h str, handler: &'h mut dyn Handler) -> Result<(), HandlersFull> {
        match self.table.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = handler,
            None => self.table.push((name, handler)).map_err(|_| HandlersFull)?,
        }
        Ok(())
    }

    /// The registered names, for `Config::commands`: a copy, so the table stays free to run.
    pub fn names(&self) -> heapless::Vec<&'h str, N> {
        self.table.iter().map(|(name, _)| *name).collect()
    }

    /// The handler for a command name as the core hands it over (still JSON-escaped; names
    /// declared in `Config::commands` compare equal to their escaped form only if they need no
    /// escaping, which command names never should).
    pub(crate) fn get(&mut self, name: &str) -> Option<&mut (dyn Handler + 'h)> {
        self.table.iter_mut().find(|(n, _)| *n == name).map(|(_, h)| &mut **h)
    }
}

impl<const N: usize, const S: usize> Default for Handlers<'_, N, S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const S: usize> fmt::Debug for Handlers<'_, N, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handlers")
            .field("commands", &self.table.iter().map(|(name, _)| name).collect::<heapless::Vec<_, N>>())
            .field("settings", &self.settings.iter().map(|(key, _)| key).collect::<heapless::Vec<_, S>>())
            .finish()
    }
}

/// What the device reports with every heartbeat.
pub trait Sampler {
    /// The heartbeat's metrics, sampled now. A device fills `custom` with what it knows (free
    /// heap, uptime, a sensor value) from storage in `self`; the three process fields may stay 0.
    fn sample(&mut self) -> Metrics<'_>;

    /// Microseconds since the Unix epoch, if the device knows the time (after SNTP, from an
    /// RTC). Asked when [`run`](crate::run) starts and before every heartbeat, so timestamps
    /// follow corrections; until it answers, timestamps count from the epoch plus uptime.
    fn unix_micros(&mut self) -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nop;

    impl Handler for Nop {
        fn handle<'s>(&'s mut self, _: &Command<'_>, _: &'s mut [u8]) -> Outcome<'s> {
            Outcome::ok("")
        }
    }

    /// Which handler a table entry is, by address.
    fn address(handler: &mut (dyn Handler + '_)) -> usize {
        (handler as *mut dyn Handler).cast::<()>() as usize
    }

    #[test]
    fn the_table_keeps_names_in_order_replaces_by_name_and_refuses_beyond_its_capacity() {
        let (mut a, mut b, mut c, mut d) = ([Nop], [Nop], [Nop], [Nop]);
        let (b_at, c_at) = (b.as_ptr() as usize, c.as_ptr() as usize);
        let mut handlers: Handlers<'_, 2> = Handlers::new();
        assert_eq!(handlers.add("blink", &mut a[0]), Ok(()));
        assert_eq!(handlers.add("read", &mut b[0]), Ok(()));
        assert_eq!(handlers.add("blink", &mut c[0]), Ok(()));
        assert_eq!(handlers.add("third", &mut d[0]), Err(HandlersFull));
        assert_eq!(handlers.names().as_slice(), ["blink", "read"]);
        assert_eq!(handlers.get("blink").map(address), Some(c_at));
        assert_eq!(handlers.get("read").map(address), Some(b_at));
        assert!(handlers.get("third").is_none());
    }
}
