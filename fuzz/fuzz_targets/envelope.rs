//! The evidence envelope, software reports, RA-TLS certificates, Enarx CSRs, and
//! host↔Keep frames: every CBOR/DER decoder that takes bytes from the network.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ward_attest::verify::{enarx, Policy};

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = ward_attest::Evidence::from_cbor(data) {
        let _ = e.to_cbor();
        let _ =
            ward_attest::verify::verify(&e, &Policy::default(), std::time::SystemTime::UNIX_EPOCH);
    }
    let _ = ward_attest::SoftwareReport::from_cbor(data);
    let _ = ward_attest::evidence_from_cert_der(data);
    let _ = enarx::parse_csr(data);
    let _ = ward_proto::decode_frame_body::<ward_proto::HostToKeep>(data);
    let _ = ward_proto::decode_frame_body::<ward_proto::KeepToHost>(data);
    let _ = ward_proto::read_frame::<_, ward_proto::HostToKeep>(&mut &data[..]);
});
