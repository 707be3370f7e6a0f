//! An application that embeds a rack with its own native gear: `cargo run --example embed_rack`.
//! It registers `enrich` beside the built-in catalog, runs `transform → enrich`, feeds it
//! payments and prints what comes out.

use fluxrig::fluxmsg::{FluxMsg, Value, json::to_string};
use fluxrig::rack::{Graph, Rack};
use fluxrig::sdk::{self, Gear, GearError, GearType, InPort, Manifest, Outbox};
use fluxrig::sdk::{Category, OutPort, Outcome, Ports};
use serde_json::{Value as Json, json};

/// The app's own gear: flags payments above `config.limit` as risky.
struct Enrich(i64, OutPort);

impl GearType for Enrich {
    type Config = Json;
    fn manifest() -> Manifest {
        Manifest::new("enrich", Category::Logic)
            .input("in", "")
            .output("out", "")
    }
    fn new(config: Json, ports: &Ports) -> Result<Self, sdk::ConfigError> {
        let Some(limit) = config["limit"].as_i64() else {
            return Err(sdk::ConfigError::field("limit", "an integer"));
        };
        Ok(Enrich(limit, ports.resolve_output("out")?))
    }
}

impl Gear for Enrich {
    fn process(
        &mut self,
        _: InPort,
        msg: &mut FluxMsg,
        _: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        let Some(amount) = msg.data.get("amount").and_then(Value::as_i64) else {
            return Err(GearError::new("no_amount"));
        };
        msg.data.insert("risky", Value::Bool(amount > self.0));
        Ok(Outcome::Emit(self.1))
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut factory = fluxrig::gears::Factory::builtin();
    factory.register::<Enrich>()?;
    let mut rack = Rack::builder("embedded").factory(factory).build()?;
    let cents = json!({ "steps": [{ "set": "data.amount", "expr": "data.amount * 100" }] });
    let graph = Graph::new() // transform → enrich
        .gear("cents", "transform", cents)
        .gear("enrich", "enrich", json!({ "limit": 50_000 }))
        .wire("cents", "enrich");
    rack.apply(graph).await?;
    let mut out = rack.tap("enrich", "out").await?;
    let input = rack.injector("cents", "in")?;
    for amount in [120, 999, 35] {
        input
            .send(FluxMsg::builder().data("amount", amount).build())
            .await?;
        println!("{}", to_string(&out.recv().await.expect("the rack runs")));
    }
    rack.shutdown(std::time::Duration::from_secs(5)).await;
    Ok(())
}
