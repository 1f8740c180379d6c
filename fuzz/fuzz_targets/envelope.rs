//! The evidence envelope, software reports, and host↔Keep frames.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = ward_attest::Evidence::from_cbor(data) {
        let _ = ward_attest::verify::verify(&e, &ward_attest::verify::Policy::default(), std::time::SystemTime::UNIX_EPOCH);
    }
    let _ = ward_attest::SoftwareReport::from_cbor(data);
    let _ = ward_proto::decode_frame_body::<ward_proto::HostToKeep>(data);
    let _ = ward_proto::decode_frame_body::<ward_proto::KeepToHost>(data);
    let _ = ward_proto::read_frame::<_, ward_proto::HostToKeep>(&mut &data[..]);
});
