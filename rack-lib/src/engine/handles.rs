//! Handles into a running rack from the embedding application: an [`Injector`] puts messages
//! into an input port, a [`Tap`] copies what an output port emits.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use fluxmsg::FluxMsg;
use sdk::InPort;
use tokio::sync::mpsc;

use super::Rack;
use super::ack::settle_all;
use super::graph::PortRef;
use super::node::{Delivery, InFlight, Sink, Target};
use super::plan::names;
use crate::error::Error;

impl Rack {
    /// A handle that puts messages into the input port `port` of the gear `gear`, as a wire
    /// would (the send waits while the queue is full, up to the send timeout).
    ///
    /// # Errors
    ///
    /// An unknown gear or input port.
    pub fn injector(&self, gear: &str, port: &str) -> Result<Injector, Error> {
        let node = self
            .nodes
            .get(gear)
            .ok_or_else(|| Error::UnknownGear(gear.to_owned()))?;
        let at = PortRef::new(gear, port);
        let input = node.ports.input(port).ok_or_else(|| Error::UnknownPort {
            gear: gear.to_owned(),
            dir: "input",
            port: port.to_owned(),
            known: names(node.ports.inputs()),
        })?;
        Ok(Injector {
            tx: node.tx.clone(),
            port: input,
            at,
            timeout: self.limits.send_timeout,
            in_flight: Arc::clone(&self.in_flight),
        })
    }

    /// Taps the output port `port` of the gear `gear`: from now on the tap gets a copy of
    /// everything it emits, as a wire's target would (a tap that is not read slows the gear
    /// down, then its sends time out). The tap stays across [`apply`](Rack::apply) while the
    /// port exists. It sees what the port emits after it is in place: to see a source's first
    /// messages, tap before the source is added (apply the graph without it, tap, then apply
    /// it with the source; the second apply only adds the source).
    ///
    /// # Errors
    ///
    /// An unknown gear or output port.
    pub async fn tap(&mut self, gear: &str, port: &str) -> Result<Tap, Error> {
        let node = self
            .nodes
            .get(gear)
            .ok_or_else(|| Error::UnknownGear(gear.to_owned()))?;
        if node.ports.output(port).is_none() {
            return Err(Error::UnknownPort {
                gear: gear.to_owned(),
                dir: "output",
                port: port.to_owned(),
                known: names(node.ports.outputs()),
            });
        }
        self.taps.retain(|(_, t)| match &t.sink {
            Sink::Queue { tx, .. } => !tx.is_closed(),
            Sink::Bus(_) => true,
        });
        let (tx, rx) = mpsc::channel(self.limits.queue);
        self.taps.push((
            PortRef::new(gear, port),
            Target {
                sink: Sink::Queue {
                    tx,
                    port: InPort::from_index(0),
                },
                name: format!("tap:{gear}.{port}").into(),
                availability: None,
                tap: true,
            },
        ));
        self.rewire(gear).await?;
        Ok(Tap {
            rx,
            buf: std::collections::VecDeque::new(),
            in_flight: Arc::clone(&self.in_flight),
        })
    }
}

/// Puts messages into one input port of one gear (see [`Rack::injector`]).
#[derive(Debug, Clone)]
pub struct Injector {
    tx: mpsc::Sender<Delivery>,
    port: InPort,
    at: PortRef,
    timeout: Duration,
    in_flight: Arc<InFlight>,
}

impl Injector {
    /// Sends one message.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] when the queue stays full for the send timeout (the message is given
    /// back in nothing: it was not accepted), [`Error::Stopped`] when the gear is gone.
    pub async fn send(&self, msg: FluxMsg) -> Result<(), Error> {
        self.send_batch(vec![msg]).await
    }

    /// Sends messages as one batch.
    ///
    /// # Errors
    ///
    /// As [`Injector::send`].
    pub async fn send_batch(&self, msgs: Vec<FluxMsg>) -> Result<(), Error> {
        if msgs.is_empty() {
            return Ok(());
        }
        let permit = match tokio::time::timeout(self.timeout, self.tx.reserve()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(Error::Stopped),
            Err(_) => return Err(Error::Full(self.at.clone())),
        };
        self.in_flight.add(msgs.len());
        permit.send(Delivery {
            port: self.port,
            msgs,
            shares: Vec::new(),
        });
        Ok(())
    }
}

/// A copy of everything one output port emits (see [`Rack::tap`]).
#[derive(Debug)]
pub struct Tap {
    rx: mpsc::Receiver<Delivery>,
    buf: VecDeque<FluxMsg>,
    in_flight: Arc<InFlight>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        // What was never read is no longer in flight.
        self.rx.close();
        while let Ok(delivery) = self.rx.try_recv() {
            self.in_flight.done(delivery.msgs.len());
        }
    }
}

impl Tap {
    /// The next message; `None` once the tap is closed (the port or the rack is gone).
    pub async fn recv(&mut self) -> Option<FluxMsg> {
        loop {
            if let Some(msg) = self.buf.pop_front() {
                return Some(msg);
            }
            let delivery = self.rx.recv().await?;
            self.take(delivery);
        }
    }

    /// The next message if one is there now.
    pub fn try_recv(&mut self) -> Option<FluxMsg> {
        while self.buf.is_empty() {
            let delivery = self.rx.try_recv().ok()?;
            self.take(delivery);
        }
        self.buf.pop_front()
    }

    /// A delivery reached the application: the end of its path (what it derives from on a
    /// guaranteed lane may be acked). What a dropped tap never read fails instead.
    fn take(&mut self, delivery: Delivery) {
        let Delivery {
            msgs, mut shares, ..
        } = delivery;
        self.in_flight.done(msgs.len());
        self.buf.extend(msgs);
        settle_all(&mut shares);
    }
}
