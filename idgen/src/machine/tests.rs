use std::net::Ipv4Addr;

use super::{from_private_ipv4, parse_fib_trie};
use crate::Error;

const FIB_TRIE: &str = "\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
     +-- 10.1.0.0/16 2 0 2
           |-- 10.1.4.7
              /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
           |-- 10.1.4.7
              /32 host LOCAL
";

#[test]
fn fib_trie_lists_local_addresses_once_without_loopback_or_broadcast() {
    assert_eq!(
        parse_fib_trie(FIB_TRIE),
        [Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(10, 1, 4, 7)]
    );
    assert!(parse_fib_trie("").is_empty());
}

#[test]
fn first_private_address_gives_its_low_16_bits() {
    let addrs = parse_fib_trie(FIB_TRIE);
    assert_eq!(from_private_ipv4(&addrs).expect("private"), 0x0407);
    assert!(matches!(
        from_private_ipv4(&addrs[..1]),
        Err(Error::NoPrivateIpv4 { candidates: 1 })
    ));
}
