//! An application that embeds a rack with its own native gear: `cargo run --example embed_rack`.
//!
//! The app registers an `enrich` gear beside the built-in catalog, runs
//! `transform → enrich → route`, feeds it messages and reads what comes out of each route.

use std::time::Duration;

use fluxrig::fluxmsg::{FluxMsg, Value};
use fluxrig::gears::Factory;
use fluxrig::rack::{Graph, Rack};
use fluxrig::sdk::{
    self, Category, Context, Gear, GearError, GearKind, InPort, Manifest, OutPort, Outbox, Outcome,
};
use serde_json::json;

/// The app's own gear: marks payments above a limit as risky.
struct Enrich {
    limit: i64,
    out: OutPort,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct EnrichConfig {
    limit: i64,
}

impl GearKind for Enrich {
    type Config = EnrichConfig;
    fn manifest() -> Manifest {
        Manifest::new("enrich", Category::Logic)
            .summary("flags risky payments")
            .input("in", "")
            .output("out", "")
    }
    fn new(c: EnrichConfig) -> Result<Self, sdk::ConfigError> {
        Ok(Enrich {
            limit: c.limit,
            out: OutPort::ERROR,
        })
    }
}

impl Gear for Enrich {
    fn init(&mut self, ctx: &mut Context) -> Result<(), GearError> {
        self.out = ctx.output("out")?;
        Ok(())
    }
    fn process(
        &mut self,
        _: InPort,
        msg: &mut FluxMsg,
        _: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        let amount = msg
            .data
            .get("amount")
            .and_then(Value::as_i64)
            .ok_or_else(|| GearError::new("no_amount"))?;
        msg.data.insert("risky", Value::Bool(amount > self.limit));
        Ok(Outcome::Emit(self.out))
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut factory = Factory::builtin();
    factory.register::<Enrich>()?;
    let mut rack = Rack::builder("embedded").factory(factory).build()?;
    rack.apply(Graph::new()
        .gear("cents", "transform", json!({ "steps": [{ "set": "data.amount", "expr": "data.amount * 100" }] }))
        .gear("enrich", "enrich", json!({ "limit": 50_000 }))
        .gear("switch", "route", json!({ "rules": [{ "when": { "field": "data.risky", "equals": true }, "to": "out_review" }], "default": "out_ok" }))
        .wire("cents", "enrich")
        .wire("enrich", "switch")).await?;
    let (mut review, mut ok) = (
        rack.tap("switch", "out_review").await?,
        rack.tap("switch", "out_ok").await?,
    );
    let input = rack.injector("cents", "in")?;
    for amount in [120, 999, 35] {
        input
            .send(FluxMsg::builder().data("amount", amount).build())
            .await?;
    }
    for _ in 0..3 {
        tokio::select! {
            Some(m) = review.recv() => println!("review: {}", fluxrig::fluxmsg::json::to_string(&m)),
            Some(m) = ok.recv() => println!("ok:     {}", fluxrig::fluxmsg::json::to_string(&m)),
        }
    }
    rack.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
