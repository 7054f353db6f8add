//! Bytes on the wire: MQTT framing and packets, and the JSON payloads of the wire contract.

pub mod frame;
pub mod json;
pub mod message;
pub mod packet;
