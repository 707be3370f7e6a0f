//! The client's network-management messages: sign-on and echo requests (0800), and the
//! recognition of their answers (0810).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use iso8583::{Message, Spec};

/// DE 70 of a sign-on.
pub(crate) const SIGN_ON: &str = "001";
/// DE 70 of an echo test.
pub(crate) const ECHO: &str = "301";
/// How many requests the client remembers waiting for their 0810.
const OUTSTANDING: usize = 16;

/// Builds 0800s and recognises the 0810s that answer them.
#[derive(Debug)]
pub(crate) struct Network {
    spec: Spec,
    stan: AtomicU32,
    /// The STANs (DE 11) of the requests sent and not answered, oldest first.
    outstanding: Mutex<VecDeque<String>>,
}

/// An answer to one of the client's own requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// DE 70 of the answer.
    pub(crate) code: String,
    /// DE 39 of the answer (empty when absent).
    pub(crate) response: String,
}

impl Network {
    /// The network-management messages of `spec` (`builtin:spec87ascii` or
    /// `builtin:spec87hex`).
    pub(crate) fn new(spec: &str) -> Result<Network, String> {
        let source = match spec {
            "builtin:spec87ascii" => "moov:spec87ascii",
            "builtin:spec87hex" => "moov:spec87hex",
            other => {
                return Err(format!(
                    "{other:?} is not builtin:spec87ascii or builtin:spec87hex"
                ));
            }
        };
        // The built-in wire layers stop at field 64; DE 70 (network management information
        // code) is added as 3 ASCII digits.
        let text = format!(
            "spec: {{id: fluxrig-network, version: 1.0.0}}\n\
             wire:\n  source: {source}\n  fields:\n    \
             70: {{type: Numeric, length: 3, enc: ASCII, prefix: ASCII.Fixed, \
             description: Network Management Information Code}}\n"
        );
        let spec = Spec::from_yaml(&text).map_err(|e| format!("{spec:?}: {e}"))?;
        Ok(Network {
            spec,
            stan: AtomicU32::new(0),
            outstanding: Mutex::new(VecDeque::new()),
        })
    }

    /// A 0800 with DE 7 (from `now`, since the Unix epoch, UTC), DE 11 and DE 70 = `code`;
    /// its STAN is remembered until an 0810 answers it.
    pub(crate) fn request(&self, code: &str, now: Duration) -> Result<Vec<u8>, String> {
        let stan = format!(
            "{:06}",
            self.stan.fetch_add(1, Ordering::Relaxed) % 999_999 + 1
        );
        let mut msg = Message::new("0800");
        msg.set(7, transmission_time(now).as_str());
        msg.set(11, stan.as_str());
        msg.set(70, code);
        let bytes = self.spec.pack_to_vec(&msg).map_err(|e| e.to_string())?;
        let mut outstanding = self
            .outstanding
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if outstanding.len() >= OUTSTANDING {
            outstanding.pop_front();
        }
        outstanding.push_back(stan);
        Ok(bytes)
    }

    /// The answer to one of this client's requests, if `iso` is one (an 0810 whose STAN it
    /// sent); it is then forgotten. Anything else, including bytes that do not unpack, is
    /// not an answer.
    pub(crate) fn answer(&self, iso: &[u8]) -> Option<Answer> {
        let msg = self.spec.unpack(iso).ok()?;
        if msg.mti() != "0810" {
            return None;
        }
        let stan = msg.text(11)?;
        let mut outstanding = self
            .outstanding
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let at = outstanding.iter().position(|s| s == stan)?;
        outstanding.remove(at);
        Some(Answer {
            code: msg.text(70).unwrap_or_default().to_owned(),
            response: msg.text(39).unwrap_or_default().to_owned(),
        })
    }

    /// Whether `iso` starts like an 0810 in this spec (a cheap test before unpacking).
    pub(crate) fn looks_like_0810(&self, iso: &[u8]) -> bool {
        matches!(iso, [b'0', b'8', b'1', b'0', ..] | [0x08, 0x10, ..])
    }
}

/// DE 7, `MMDDhhmmss` in UTC.
fn transmission_time(now: Duration) -> String {
    let c = crate::generate::Civil::of(now);
    format!(
        "{:02}{:02}{:02}{:02}{:02}",
        c.month, c.day, c.hour, c.minute, c.second
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Network, transmission_time};

    #[test]
    fn transmission_time_is_utc_month_day_time() {
        // 2026-12-07 19:43:35 UTC.
        assert_eq!(
            transmission_time(Duration::from_secs(1_796_672_615)),
            "1207194335"
        );
        assert_eq!(transmission_time(Duration::ZERO), "0101000000");
    }

    #[test]
    fn an_answer_is_recognised_once_by_its_stan() {
        let network = Network::new("builtin:spec87ascii").expect("built in");
        let request = network
            .request(super::ECHO, Duration::from_secs(0))
            .expect("packs");
        let mut msg = network.spec.unpack(&request).expect("unpacks");
        assert_eq!(msg.text(70), Some("301"));
        msg.set_mti("0810");
        msg.set(39, "00");
        let answer = network.spec.pack_to_vec(&msg).expect("packs");
        assert!(network.looks_like_0810(&answer));
        let got = network.answer(&answer).expect("an answer");
        assert_eq!((got.code.as_str(), got.response.as_str()), ("301", "00"));
        assert_eq!(network.answer(&answer), None, "answered once");
        assert_eq!(network.answer(b"garbage"), None);
    }
}
