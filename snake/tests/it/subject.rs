//! Subjects: the table, the validation of names, and NATS wildcard matching.

use proptest::prelude::*;
use snake::{Error, Pattern, Subject, token};

#[track_caller]
fn check_refused(name: &str, reason: &str) {
    match token("rack name", name) {
        Err(Error::InvalidName { reason: r, .. }) => assert!(r.contains(reason), "{name:?}: {r}"),
        other => panic!("{name:?} was not refused: {other:?}"),
    }
    // Every builder that takes a name refuses it the same way.
    assert!(Subject::scenario(name).is_err());
    assert!(Subject::msg(name, "g", "p").is_err());
    assert!(Subject::msg("r", name, "p").is_err());
    assert!(Subject::msg("r", "g", name).is_err());
    assert!(Subject::dead_letter("r", "g", name).is_err());
    assert!(Subject::ctrl(name).is_err());
    assert!(Subject::enrollment(name, "n").is_err());
    assert!(Subject::enrollment("r", name).is_err());
    assert!(Subject::telemetry(name).is_err());
    assert!(Subject::timeout(name).is_err());
    assert!(Pattern::msg_rack(name).is_err());
}

#[test]
fn the_subject_table() {
    let cases = [
        (Subject::hello(), "flux.agent.hello"),
        (Subject::heartbeat(), "flux.agent.heartbeat"),
        (
            Subject::enrollment("edge-1", "5f1c").expect("valid"),
            "flux.agent.enrollment.edge-1.5f1c",
        ),
        (Subject::notify(101), "flux.agent.notify.101"),
        (
            Subject::scenario("edge-1").expect("valid"),
            "flux.rack.edge-1.scenario",
        ),
        (
            Subject::msg("edge-1", "acceptor", "out_visa").expect("valid"),
            "flux.msg.edge-1.acceptor.out_visa",
        ),
        (
            Subject::dead_letter("edge-1", "acceptor", "in").expect("valid"),
            "flux.dlq.edge-1.acceptor.in",
        ),
        (
            Subject::ctrl("acceptor").expect("valid"),
            "flux.ctrl.acceptor",
        ),
        (
            Subject::telemetry("metrics").expect("valid"),
            "flux.telemetry.metrics",
        ),
        (
            Subject::timeout("tickets").expect("valid"),
            "flux.event.timeout.tickets",
        ),
    ];
    for (subject, text) in cases {
        assert_eq!(subject.as_str(), text);
        assert_eq!(Subject::parse(text).expect("parses"), subject);
    }
}

#[test]
fn names_that_could_inject_a_subject_are_refused() {
    check_refused("", "empty");
    check_refused("edge.1", "`.`");
    check_refused("edge-*", "wildcard");
    check_refused(">", "wildcard");
    check_refused("edge 1", "whitespace");
    check_refused("edge\t1", "whitespace");
    check_refused("edge\n1", "whitespace");
    check_refused("edge\u{0}1", "control");
    check_refused("$JS", "only ASCII");
    check_refused("café", "only ASCII");
    check_refused(&"a".repeat(65), "longer than 64");
    assert!(token("rack name", &"a".repeat(64)).is_ok());
}

#[test]
fn errors_say_what_and_why() {
    let err = Subject::msg("edge-1", "acc.eptor", "in").expect_err("dot");
    assert_eq!(
        err.to_string(),
        "invalid gear name `acc.eptor`: it contains `.`, the subject separator"
    );
}

#[test]
fn wildcard_matching() {
    let subject = |s: &str| Subject::parse(s).expect("subject");
    let pattern = |s: &str| Pattern::parse(s).expect("pattern");
    let table = [
        ("flux.msg.>", "flux.msg.a.b.c", true),
        ("flux.msg.>", "flux.msg", false),
        ("flux.>", "flux.msg", true),
        ("flux.*", "flux.msg", true),
        ("flux.*", "flux.msg.a", false),
        ("flux.*.a", "flux.msg.a", true),
        ("flux.*.a", "flux.msg.b", false),
        ("*.*.*", "a.b.c", true),
        ("*.*.*", "a.b", false),
        ("a.b.c", "a.b.c", true),
        ("a.b.c", "a.b.cd", false),
        ("a.b", "a.b.c", false),
        (">", "a", true),
    ];
    for (p, s, want) in table {
        assert_eq!(pattern(p).matches(&subject(s)), want, "{p} ~ {s}");
    }
    for bad in ["flux.>.a", "flux..a", "", "flux.**", "flux.a b"] {
        assert!(Pattern::parse(bad).is_err(), "{bad:?}");
    }
    for bad in ["flux.*", "flux.>", "", "a..b"] {
        assert!(Subject::parse(bad).is_err(), "{bad:?}");
    }
}

proptest! {
    #[test]
    fn any_name_is_either_one_clean_token_or_refused(name in "\\PC{0,70}|[A-Za-z0-9_.*> -]{0,12}") {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        match Subject::msg("edge-1", &name, "in") {
            Ok(s) => {
                prop_assert!(valid);
                prop_assert_eq!(s.tokens().count(), 5);
                prop_assert_eq!(s.tokens().nth(3), Some(name.as_str()));
            }
            Err(_) => prop_assert!(!valid),
        }
    }

    #[test]
    fn a_rack_pattern_matches_exactly_its_rack(
        rack in "[a-z0-9_-]{1,8}",
        other in "[a-z0-9_-]{1,8}",
        gear in "[a-z]{1,8}",
        port in "[a-z_]{1,8}",
    ) {
        let p = Pattern::msg_rack(&rack).expect("valid");
        prop_assert!(p.matches(&Subject::msg(&rack, &gear, &port).expect("valid")));
        prop_assert_eq!(
            p.matches(&Subject::msg(&other, &gear, &port).expect("valid")),
            rack == other
        );
        prop_assert!(!p.matches(&Subject::dead_letter(&rack, &gear, &port).expect("valid")));
    }
}
