//! Bytes on the wire: MQTT framing and packets, and the JSON payloads of the wire contract.

pub(crate) mod frame;
pub(crate) mod json;
pub(crate) mod message;
pub(crate) mod packet;
