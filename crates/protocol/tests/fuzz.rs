//! Fuzz targets for the wire decoders: every message of `coordinator.v1`
//! and `broker.v1` (requests, responses and the metadata records the
//! coordinator logs and streams) decoded from arbitrary bytes and from
//! protobuf-shaped bytes with every wire type in every field. Decoding
//! returns a message or an error, never panics; a decoded message encodes
//! to bytes that decode to the same message; and applying any decoded
//! metadata to a `MetadataImage` never panics.
//!
//! Bounded for CI; `PROPTEST_CASES=100000 cargo nextest run -p protocol
//! --test fuzz` runs each target longer.

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message;
use protocol::image::MetadataImage;
use protocol::{broker, coordinator};

/// Decodes `bytes` as `M`; a message that decodes must survive a round
/// trip through its own encoding.
fn decode_as<M: Message + Default + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    if let Ok(message) = M::decode(bytes) {
        let encoded = message.encode_to_vec();
        let again = M::decode(encoded.as_slice()).expect("re-encoded message decodes");
        assert_eq!(again, message);
        // Zero-copy `bytes` fields decode from a `Bytes` buffer too.
        let from_bytes = M::decode(Bytes::from(encoded)).expect("decodes from Bytes");
        assert_eq!(from_bytes, message);
    }
}

/// Every message type, by its proto name. `every_rpc_request_is_fuzzed`
/// checks the requests of both services against the `.proto` files, so a
/// new RPC cannot be added without its decoder being fuzzed.
macro_rules! messages {
    ($($package:ident :: $name:ident),* $(,)?) => {
        const FUZZED: &[&str] = &[$(stringify!($name)),*];

        fn decode_every_message(bytes: &[u8]) {
            $(decode_as::<$package::$name>(bytes);)*
        }
    };
}

messages!(
    coordinator::RegisterBrokerRequest,
    coordinator::RegisterBrokerResponse,
    coordinator::HeartbeatRequest,
    coordinator::HeartbeatResponse,
    coordinator::ControlledShutdownRequest,
    coordinator::ControlledShutdownResponse,
    coordinator::CreateTopicsRequest,
    coordinator::CreateTopicsResponse,
    coordinator::DeleteTopicsRequest,
    coordinator::DeleteTopicsResponse,
    coordinator::CreatePartitionsRequest,
    coordinator::CreatePartitionsResponse,
    coordinator::AlterConfigsRequest,
    coordinator::AlterConfigsResponse,
    coordinator::ListTopicsRequest,
    coordinator::ListTopicsResponse,
    coordinator::DescribeTopicsRequest,
    coordinator::DescribeTopicsResponse,
    coordinator::DescribeClusterRequest,
    coordinator::DescribeClusterResponse,
    coordinator::AlterPartitionRequest,
    coordinator::AlterPartitionResponse,
    coordinator::WatchMetadataRequest,
    coordinator::MetadataUpdate,
    coordinator::MetadataRecord,
    broker::ProduceRequest,
    broker::ProduceResponse,
    broker::FetchRequest,
    broker::FetchResponse,
    broker::ListOffsetsRequest,
    broker::ListOffsetsResponse,
    broker::MetadataRequest,
    broker::MetadataResponse,
);

/// One protobuf field: a tag with any field number and wire type, then a
/// payload that mostly suits the wire type (so decoding goes deep) and
/// sometimes does not.
fn arb_field(inner: BoxedStrategy<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let field_number = prop_oneof![8 => 1u64..12, 1 => 12u64..40, 1 => Just(536_870_911u64)];
    let payload = prop_oneof![
        // varint: small, negative (10 bytes), huge
        any::<i64>().prop_map(|v| (0u64, varint(v as u64))),
        (0u64..300).prop_map(|v| (0u64, varint(v))),
        // fixed64 / fixed32
        any::<[u8; 8]>().prop_map(|b| (1u64, b.to_vec())),
        any::<[u8; 4]>().prop_map(|b| (5u64, b.to_vec())),
        // length-delimited: a nested message, a string, or bytes
        inner.prop_map(|m| (2u64, [varint(m.len() as u64), m].concat())),
        ".{0,10}".prop_map(|s: String| (2u64, [varint(s.len() as u64), s.into_bytes()].concat())),
        // a length that lies
        (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(len, b)| (2u64, [varint(u64::from(len)), b].concat())),
        // group markers and invalid wire types
        (3u64..8, proptest::collection::vec(any::<u8>(), 0..4)),
    ];
    (field_number, payload).prop_map(|(number, (wire_type, payload))| {
        [varint((number << 3) | wire_type), payload].concat()
    })
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

/// Protobuf-shaped bytes, nested a few levels deep.
fn arb_message() -> impl Strategy<Value = Vec<u8>> {
    let leaf = proptest::collection::vec(any::<u8>(), 0..16).boxed();
    leaf.prop_recursive(3, 64, 8, |inner| {
        proptest::collection::vec(arb_field(inner), 0..8)
            .prop_map(|fields| fields.concat())
            .boxed()
    })
}

proptest! {
    #![proptest_config(fuzz_support::config(512))]

    #[test]
    fn arbitrary_bytes_decode_or_fail(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_every_message(&data);
    }

    #[test]
    fn protobuf_shaped_bytes_decode_or_fail(data in arb_message()) {
        decode_every_message(&data);
    }

    /// The broker applies whatever the coordinator's watch stream decodes
    /// to: records naming unknown topics, negative partitions, empty
    /// names, updates out of order.
    #[test]
    fn any_decoded_metadata_applies_without_panic(
        updates in proptest::collection::vec(arb_message(), 1..6),
    ) {
        let mut image = MetadataImage::default();
        for bytes in &updates {
            if let Ok(update) = coordinator::MetadataUpdate::decode(bytes.as_slice()) {
                image.apply_update(&update);
            }
            if let Ok(record) = coordinator::MetadataRecord::decode(bytes.as_slice()) {
                image.apply(&record);
            }
            let _ = image.snapshot_update();
            let _ = image.live_broker_ids().count();
        }
    }
}

#[test]
fn every_rpc_request_is_fuzzed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let mut requests = Vec::new();
    for file in ["coordinator.proto", "broker.proto"] {
        let text = std::fs::read_to_string(dir.join(file)).expect("the proto file is readable");
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("rpc "))
        {
            // rpc Name(stream pkg.v1.Request) returns (...);
            let argument = line
                .split_once('(')
                .and_then(|(_, rest)| rest.split_once(')'))
                .map(|(argument, _)| argument)
                .expect("an rpc line has an argument");
            let name = argument.trim_start_matches("stream ").rsplit('.').next();
            requests.push(name.expect("a type name").to_owned());
        }
    }
    assert!(requests.len() >= 15, "{requests:?}");
    for request in &requests {
        assert!(
            FUZZED.contains(&request.as_str()),
            "{request} is not fuzzed"
        );
    }
}
