//! The MQTT session underneath the node: reconnect backoff and the QoS 1 outbox.

mod backoff;
pub(crate) mod outbox;

pub use backoff::Backoff;
pub use outbox::MessageKind;
