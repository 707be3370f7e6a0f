//! Scenario files run end to end in process.

use std::time::Duration;

use rack_lib::Rack;
use rack_lib::scenario::Scenario;
use testkit::{wait_until, within};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_pipeline_scenario_routes_every_message() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/scenarios/pipeline.yaml"
    );
    let validated = Scenario::from_file(path)
        .expect("parses")
        .validate(&gears::Factory::builtin())
        .expect("validates");
    assert_eq!(validated.racks(), ["local"]);
    let mut rack = Rack::builder("local").build().expect("a rack");
    let change = rack.apply_scenario(&validated).await.expect("applied");
    assert_eq!(change.added.len(), 6);
    let routed = |rack: &Rack| -> u64 {
        let stats = rack.stats();
        ["visa-log", "mastercard-log", "declined"]
            .iter()
            .map(|g| stats[*g].messages_in)
            .sum()
    };
    wait_until("all 1000 messages routed", || routed(&rack) == 1000).await;
    assert_eq!(rack.stats()["switch"].errors, 0);
    assert!(rack.shutdown(Duration::from_secs(5)).await.drained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_request_response_scenario_answers_a_real_client() {
    let port = testkit::free_port();
    let yaml = format!(
        r#"
meta: {{ name: echo, version: 1.0.0 }}
gears:
  - name: listener
    type: io_tcp
    config: {{ mode: server, bind: "127.0.0.1:{port}" }}
  - name: shout
    type: transform
    config:
      steps:
        - set: raw
          expr: "let text = raw.as_string(); text.make_upper(); text"
wires:
  - {{ from: listener.out, to: shout.in }}
  - {{ from: shout.out, to: listener.in }}
"#
    );
    let rack = crate::local_rack(&yaml).await;

    // The listener is bound when apply returns (the gear binds in start).
    let mut clients = Vec::new();
    for who in ["ada", "bob"] {
        let stream = within(
            "a connection",
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        .expect("the listener is up");
        clients.push((who, BufReader::new(stream)));
    }
    for (who, client) in &mut clients {
        client
            .get_mut()
            .write_all(format!("hello {who}\n").as_bytes())
            .await
            .expect("write");
    }
    for (who, client) in &mut clients {
        let mut line = String::new();
        within("an answer", client.read_line(&mut line))
            .await
            .expect("read");
        assert_eq!(
            line,
            format!("HELLO {}\n", who.to_uppercase()),
            "each client gets its own answer"
        );
    }
    rack.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_that_fails_validation_changes_nothing() {
    let good = r#"
meta: { name: s, version: 1.0.0 }
gears:
  - { name: a, type: filter, config: { pass_if: { field: id, exists: true } } }
"#;
    let bad = r#"
meta: { name: s, version: 1.0.0 }
gears:
  - { name: a, type: filter, config: { pass_if: { field: id, exists: "yes" } } }
"#;
    let factory = gears::Factory::builtin();
    let mut rack = Rack::builder("local").build().expect("a rack");
    rack.apply_scenario(
        &Scenario::parse(good)
            .expect("parses")
            .validate(&factory)
            .expect("valid"),
    )
    .await
    .expect("applied");
    let err = Scenario::parse(bad)
        .expect("parses")
        .validate(&factory)
        .expect_err("invalid");
    assert!(err.to_string().starts_with("4:"), "{err}");
    assert_eq!(rack.graph().gears.len(), 1);
    rack.shutdown(Duration::from_secs(5)).await;
}

/// A wasm gear (the testbed guest, built from source) between two native gears: transform →
/// wasm → filter. Every message comes out of the filter with both gears' fields, in order;
/// two messages that make the guest loop forever cost only themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_gear_between_native_gears_runs_end_to_end() {
    let module = testkit::guest_wasm("testbed");
    let yaml = format!(
        r#"
meta: {{ name: wasm-in-the-middle, version: 1.0.0 }}
gears:
  - name: enrich
    type: transform
    config: {{ steps: [{{ set: data.currency, value: EUR }}] }}
  - name: guest
    type: wasm
    config: {{ source: "file://{}", allow_unsigned: true, deadline: 50ms }}
  - name: checked
    type: filter
    config: {{ pass_if: {{ field: data.checked, equals: true }} }}
wires:
  - {{ from: enrich.out, to: guest.in }}
  - {{ from: guest.out, to: checked.in }}
"#,
        module.display()
    );
    let validated = Scenario::parse(&yaml)
        .expect("parses")
        .validate(&gears::Factory::builtin())
        .expect("validates");
    let mut rack = Rack::builder("local").build().expect("a rack");
    rack.apply_scenario(&validated).await.expect("applied");
    let mut tap = rack.tap("checked", "out").await.expect("tap");
    let mut errors = rack.tap("guest", "error").await.expect("tap");
    let input = rack.injector("enrich", "in").expect("injector");
    for n in 0..500u64 {
        let mut msg = fluxmsg::FluxMsg::builder().data("amount", n).build();
        if n == 100 || n == 300 {
            msg.meta.insert("test.action", "loop".into());
        }
        input.send(msg).await.expect("sent");
    }
    let mut amounts = Vec::new();
    while amounts.len() < 498 {
        let msg = within("every message on the tap", tap.recv())
            .await
            .expect("the tap is open");
        assert_eq!(
            msg.data.get("currency").and_then(|v| v.as_str()),
            Some("EUR")
        );
        amounts.push(msg.data.get("amount").and_then(|v| v.as_u64()));
    }
    let expected: Vec<_> = (0..500u64)
        .filter(|n| *n != 100 && *n != 300)
        .map(Some)
        .collect();
    assert_eq!(amounts, expected, "in order, none lost but the looping two");
    for n in [100, 300] {
        let failed = within("the looping message on error", errors.recv())
            .await
            .expect("the tap is open");
        assert_eq!(failed.data.get("amount").and_then(|v| v.as_u64()), Some(n));
        assert_eq!(
            failed.meta.get("error.reason").map(|v| v.as_str()),
            Some("deadline")
        );
    }
    let stats = rack.stats();
    assert_eq!(
        (
            stats["guest"].messages_in,
            stats["guest"].messages_out,
            stats["guest"].errors
        ),
        (500, 500, 2),
        "498 on out and 2 on error"
    );
    assert!(rack.shutdown(Duration::from_secs(5)).await.drained);
}
