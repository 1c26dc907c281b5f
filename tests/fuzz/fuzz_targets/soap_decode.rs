//! vim25 SOAP reply decoding: any body vCenter (or whatever answers at GOVC_URL) sends must
//! decode to a result or a typed error, never a panic, in time linear in its size.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    reset_controller::vcenter::fuzz::decode_all(body);
});
