//! Scenario files run end to end in process.

use std::time::Duration;

use rack_lib::Rack;
use rack_lib::scenario::Scenario;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stats = rack.stats();
        let routed: u64 = ["visa-log", "mastercard-log", "declined"]
            .iter()
            .map(|g| stats[*g].messages_in)
            .sum();
        if routed == 1000 {
            assert_eq!(stats["switch"].errors, 0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {routed} routed: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rack.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_request_response_scenario_answers_a_real_client() {
    let port = free_port();
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
    let validated = Scenario::parse(&yaml)
        .expect("parses")
        .validate(&gears::Factory::builtin())
        .expect("validates");
    let mut rack = Rack::builder("local").build().expect("a rack");
    rack.apply_scenario(&validated).await.expect("applied");

    let mut clients = Vec::new();
    for who in ["ada", "bob"] {
        let stream = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    return s;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
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
        tokio::time::timeout(Duration::from_secs(5), client.read_line(&mut line))
            .await
            .expect("an answer within 5 s")
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
        let msg = tokio::time::timeout(Duration::from_secs(20), tap.recv())
            .await
            .expect("every message arrives in time")
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
        let failed = tokio::time::timeout(Duration::from_secs(20), errors.recv())
            .await
            .expect("the looping message reaches error")
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
    assert!(rack.shutdown(Duration::from_secs(5)).await);
}
