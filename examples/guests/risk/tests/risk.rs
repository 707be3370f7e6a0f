//! The risk example, run natively.

use fluxmsg::{FluxMsg, Value};
use guest_risk::Risk;
use sdk::abi;
use sdk::guest::{Output, log, simulate};

fn payment(amount: &str) -> FluxMsg {
    FluxMsg::builder()
        .meta("iso8583.mti", "0100")
        .data_path("iso8583.field.4", amount)
        .expect("path")
        .build()
}

#[test]
fn small_amounts_are_scored_and_large_ones_reviewed() {
    let msgs = [
        payment("000000010000"),
        payment("000000100000"),
        payment("000000100001"),
        payment("not a number"),
        FluxMsg::new(),
    ];
    let _ = log::take();
    let outputs = simulate(&mut Risk, &msgs).expect("simulated");
    let scored = |m: &FluxMsg| {
        let mut m = m.clone();
        m.data
            .set_path("risk.score", Value::from(10u64))
            .expect("path");
        m
    };
    let emit = |index: u32, port: &str, msg: FluxMsg| Output::Emit {
        index,
        port: port.into(),
        msg,
    };
    assert_eq!(
        outputs,
        [
            emit(0, "out", scored(&msgs[0])),
            emit(1, "out", scored(&msgs[1])),
            emit(2, "review", msgs[2].clone()),
            emit(3, "out", scored(&msgs[3])),
            emit(4, "out", scored(&msgs[4])),
        ]
    );
    let logged = log::take();
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].0, abi::LOG_WARN);
}
