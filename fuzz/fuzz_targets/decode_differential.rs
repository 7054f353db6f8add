#![no_main]
//! Every packet the core's decoder accepts, rumqttc's MQTT 3.1.1 decoder must accept too, with
//! the same fields. (The core may refuse more: it is stricter about what a broker may send.)

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet, SubscribeReasonCode};
use rumqttc::mqttbytes::QoS;
use subnodesync_core::FixedHeader;
use subnodesync_core::fuzzing::{decode, Inbound};
use subnodesync_core::ConnectRefused;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(Some(header)) = FixedHeader::parse(data) else { return };
    let Some(frame) = data.get(..header.packet_len()) else { return };
    let Ok(ours) = decode(frame) else { return };
    let theirs = Packet::read(&mut BytesMut::from(frame), frame.len() + 1)
        .unwrap_or_else(|e| panic!("rumqttc refuses {frame:02x?} ({e:?}); the core decoded {ours:?}"));
    let agree = match (&ours, &theirs) {
        (Inbound::Connack(result), Packet::ConnAck(c)) => {
            let code = match result {
                Ok(_) => ConnectReturnCode::Success,
                Err(ConnectRefused::ProtocolVersion) => ConnectReturnCode::RefusedProtocolVersion,
                Err(ConnectRefused::IdentifierRejected) => ConnectReturnCode::BadClientId,
                Err(ConnectRefused::ServerUnavailable) => ConnectReturnCode::ServiceUnavailable,
                Err(ConnectRefused::BadUsernamePassword) => ConnectReturnCode::BadUserNamePassword,
                Err(_) => ConnectReturnCode::NotAuthorized,
            };
            c.code == code && result.map_or(true, |session| session == c.session_present)
        }
        (Inbound::Publish(p), Packet::Publish(q)) => {
            p.topic == q.topic
                && p.payload == &q.payload[..]
                && p.pid.unwrap_or(0) == q.pkid
                && p.dup == q.dup
                && p.retain == q.retain
                && (q.qos == QoS::AtMostOnce) == p.pid.is_none()
        }
        (Inbound::Puback(a), Packet::PubAck(b)) => *a == b.pkid,
        (Inbound::Unsuback(a), Packet::UnsubAck(b)) => *a == b.pkid,
        (Inbound::Suback(pid, granted), Packet::SubAck(s)) => {
            *pid == s.pkid
                && granted.len() == s.return_codes.len()
                && granted.iter().zip(&s.return_codes).all(|(g, c)| *g == matches!(c, SubscribeReasonCode::Success(_)))
        }
        (Inbound::Pingresp, Packet::PingResp) => true,
        _ => false,
    };
    assert!(agree, "decoders disagree on {frame:02x?}: core {ours:?}, rumqttc {theirs:?}");
});
