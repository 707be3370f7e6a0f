//! The response MTI of a request MTI: the function digit (the third) goes from a request
//! kind to its response kind, whatever the version and origin digits say.

use sdk::GearError;

/// The response MTI to `request`, or why there is none.
///
/// The second digit is the class and must be 1 to 8 (authorisation, financial, file action,
/// reversal and chargeback, reconciliation, administrative, fee collection, network
/// management); the third is the function: a request (0), advice (2), notification (4) or
/// instruction (6) is answered with the next digit; an odd digit is already a response, and
/// 8 and 9 are reserved.
pub(super) fn response_mti(request: Option<&str>) -> Result<[u8; 4], GearError> {
    let Some(mti) = request else {
        return Err(GearError::new("no_mti").with_detail(
            "the message has no meta.iso8583.mti: decode it with codec_iso8583 first",
        ));
    };
    let digits: [u8; 4] = mti
        .as_bytes()
        .try_into()
        .ok()
        .filter(|d: &[u8; 4]| d.iter().all(u8::is_ascii_digit))
        .ok_or_else(|| {
            GearError::new("bad_mti").with_detail(format_args!(
                "the MTI {:?} is not four digits",
                iso8583::mask_pans(mti)
            ))
        })?;
    if !(b'1'..=b'8').contains(&digits[1]) {
        return Err(GearError::new("unknown_mti_class").with_detail(format_args!(
            "the MTI {mti} has the class digit {}, not 1 to 8: the responder does not know what \
             answers it",
            char::from(digits[1])
        )));
    }
    match digits[2] {
        b'0' | b'2' | b'4' | b'6' => {
            let mut response = digits;
            response[2] += 1;
            Ok(response)
        }
        b'1' | b'3' | b'5' | b'7' => Err(GearError::new("response_mti").with_detail(format_args!(
            "the MTI {mti} is a response (function digit {}): the responder answers requests, \
             advices, notifications and instructions only",
            char::from(digits[2])
        ))),
        other => Err(
            GearError::new("unknown_mti_function").with_detail(format_args!(
                "the MTI {mti} has the reserved function digit {}",
                char::from(other)
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::response_mti;

    fn answer(mti: &str) -> Result<String, String> {
        response_mti(Some(mti))
            .map(|r| String::from_utf8_lossy(&r).into_owned())
            .map_err(|e| e.reason().to_owned())
    }

    fn refusal(mti: &str) -> String {
        answer(mti).expect_err(mti)
    }

    #[test]
    fn requests_get_the_next_function_digit() {
        for (request, response) in [
            ("0100", "0110"),
            ("0200", "0210"),
            ("0800", "0810"),
            ("0420", "0430"),
            ("0400", "0410"),
            ("0120", "0130"),
            ("1804", "1814"),
            ("2206", "2216"),
            ("0340", "0350"),
            ("0160", "0170"),
        ] {
            assert_eq!(answer(request).as_deref(), Ok(response), "{request}");
        }
    }

    #[test]
    fn responses_odd_classes_and_junk_are_refused() {
        assert_eq!(refusal("0110"), "response_mti");
        assert_eq!(refusal("0430"), "response_mti");
        assert_eq!(refusal("0810"), "response_mti");
        assert_eq!(refusal("0900"), "unknown_mti_class");
        assert_eq!(refusal("0000"), "unknown_mti_class");
        assert_eq!(refusal("0180"), "unknown_mti_function");
        assert_eq!(refusal("010"), "bad_mti");
        assert_eq!(refusal("01a0"), "bad_mti");
        assert_eq!(refusal("０１００"), "bad_mti");
        assert_eq!(
            response_mti(None).map_err(|e| e.reason().to_owned()),
            Err("no_mti".to_owned())
        );
    }
}
