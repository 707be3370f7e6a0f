//! Gears that take whole batches (`Gear::process_batch`) and the asynchronous `Gear::load`.

use fluxmsg::{FluxMsg, Value};
use schemars::JsonSchema;
use sdk::{
    Category, ConfigError, Context, DynGearType, Gear, GearError, GearType, Harness, InPort,
    LoadFuture, Manifest, OutPort, Outbox, Outcome, Ports,
};
use serde::Deserialize;
use serde_json::json;

/// Takes a batch at a time: `keep` goes out with its position in the batch, `drop` is
/// dropped, `fail` goes to error, `leave` stays in the batch, `panic` panics.
#[derive(Debug)]
struct Batcher {
    loaded: Option<String>,
    out: OutPort,
    calls: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct BatcherConfig {
    #[serde(default)]
    fail_load: bool,
}

impl GearType for Batcher {
    type Config = BatcherConfig;

    fn manifest() -> Manifest {
        Manifest::new("batcher", Category::Logic)
            .input("in", "messages")
            .output("out", "messages")
    }

    fn new(config: BatcherConfig, ports: &Ports) -> Result<Batcher, ConfigError> {
        Ok(Batcher {
            loaded: config.fail_load.then(|| "fail".to_owned()),
            out: ports.resolve_output("out")?,
            calls: 0,
        })
    }
}

fn action(msg: &FluxMsg) -> &str {
    msg.data.get("do").and_then(Value::as_str).unwrap_or("")
}

impl Gear for Batcher {
    fn load<'a>(&'a mut self, ctx: &'a Context) -> LoadFuture<'a> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            if self.loaded.as_deref() == Some("fail") {
                return Err(GearError::new("load").with_detail("told to fail"));
            }
            self.loaded = Some(format!("loaded for {}", ctx.name()));
            Ok(())
        })
    }

    fn process(
        &mut self,
        _: InPort,
        _: &mut FluxMsg,
        _: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        Err(GearError::new("per_message").with_detail("process_batch should have run"))
    }

    fn process_batch(&mut self, _: InPort, batch: &mut Vec<FluxMsg>, out: &mut Outbox<'_>) -> bool {
        self.calls += 1;
        let mut left = Vec::new();
        for (i, mut msg) in std::mem::take(batch).into_iter().enumerate() {
            match action(&msg) {
                "drop" => out.drop("told_to_drop"),
                "fail" => out.error(msg, &GearError::new("told_to_fail")),
                "leave" => left.push(msg),
                "panic" => {
                    left.push(msg);
                    *batch = left;
                    panic!("batcher told to panic");
                }
                _ => {
                    msg.data.insert("position", Value::from(i as u64));
                    msg.data.insert("calls", Value::from(self.calls));
                    if let Some(loaded) = &self.loaded {
                        msg.data.insert("loaded", Value::from(loaded.as_str()));
                    }
                    out.emit(self.out, msg);
                }
            }
        }
        *batch = left;
        true
    }
}

fn msg(action: &str) -> FluxMsg {
    FluxMsg::builder().data("do", action).build()
}

fn batcher() -> Harness {
    Harness::new::<Batcher>(&json!({})).expect("a valid batcher")
}

#[test]
fn a_batch_gear_sees_the_whole_batch_in_one_call() {
    let mut h = batcher();
    h.send_batch("in", [msg("keep"), msg("drop"), msg("keep"), msg("fail")])
        .expect("processed");
    let out = h.take("out");
    let seen: Vec<_> = out
        .iter()
        .map(|m| {
            (
                m.data.get("position").and_then(Value::as_u64),
                m.data.get("calls").and_then(Value::as_u64),
            )
        })
        .collect();
    assert_eq!(seen, [(Some(0), Some(1)), (Some(2), Some(1))]);
    assert_eq!(h.error_reasons(), ["told_to_fail"]);
    let stats = h.stats();
    assert_eq!(
        (
            stats.messages_in,
            stats.messages_out,
            stats.errors,
            stats.dropped("told_to_drop")
        ),
        (4, 3, 1, 1)
    );
}

#[test]
fn messages_a_batch_gear_leaves_behind_go_to_error() {
    let mut h = batcher();
    h.send_batch("in", [msg("leave"), msg("keep")])
        .expect("processed");
    assert_eq!(h.take("out").len(), 1);
    assert_eq!(h.error_reasons(), ["unhandled"]);
}

#[test]
fn a_panic_in_a_batch_sends_what_is_left_to_error_and_the_gear_goes_on() {
    let mut h = batcher();
    h.send_batch("in", [msg("keep"), msg("panic"), msg("keep")])
        .expect("processed");
    assert_eq!(h.take("out").len(), 1, "the message before the panic left");
    assert_eq!(h.error_reasons(), ["panic"]);
    h.send("in", msg("keep")).expect("processed");
    assert_eq!(h.take("out").len(), 1);
}

#[tokio::test]
async fn load_runs_before_init_and_its_failure_is_an_error() {
    let kind = DynGearType::of::<Batcher>().expect("type");
    let mut h = Harness::builder(kind.clone())
        .name("b1")
        .build_loaded(&json!({}))
        .await
        .expect("loads");
    h.send("in", msg("keep")).expect("processed");
    let out = h.take("out");
    assert_eq!(
        out[0].data.get("loaded").and_then(Value::as_str),
        Some("loaded for b1")
    );

    let err = Harness::builder(kind)
        .build_loaded(&json!({ "fail_load": true }))
        .await
        .expect_err("load fails");
    let text = testkit::chain(&err);
    assert!(
        text.contains("load") && text.contains("told to fail"),
        "{text}"
    );
}
