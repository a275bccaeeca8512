//! The network policy: patterns parse without a panic, and no address that
//! is special (loopback, private, link-local, metadata, their mapped and
//! translated forms) ever passes unless a granted pattern names it
//! literally.
#![no_main]

use std::net::{IpAddr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use warden_core::HostPattern;
use warden_core::net::{NetPolicy, Target, special_address};

fuzz_target!(|input: (&str, &str, [u8; 16], bool)| {
    let (pattern, host, octets, https) = input;
    let _ = HostPattern::parse(pattern);
    let target = Target::new(https, host, None);
    let any = NetPolicy::new(vec![HostPattern::parse("*://*:*").unwrap()], None);
    let _ = any.check_target(&target);
    let ip = IpAddr::V6(Ipv6Addr::from(octets));
    // An IPv6 form of a special IPv4 address is special itself.
    if special_address(ip.to_canonical()).is_some() {
        assert!(
            special_address(ip).is_some(),
            "{ip} hides a special address"
        );
    }
    for ip in [ip, ip.to_canonical()] {
        if special_address(ip).is_some() {
            assert!(any.check_address(&target, ip).is_err(), "{ip} passed");
        }
    }
});
