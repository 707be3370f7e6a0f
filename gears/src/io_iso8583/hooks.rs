//! What `io_iso8583` adds to the TCP machinery: the TPDU and protocol header of each frame,
//! link events and availability, sign-on and echo.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fluxmsg::FluxMsg;
use fluxmsg::bytes::Bytes;
use sdk::{Availability, Clock, Context, Emitter, OutPort};
use tokio::time::Instant;

use super::network::{ECHO, Network, SIGN_ON};
use super::{CONN_EVENT_META, CONN_REASON_META, IsoSettings, RAW_HEADER_META, TPDU_META, hex};
use crate::meta::{CONN_ID, PEER_IP, PEER_PORT};
use crate::tcp::conn::format_conn_id;
use crate::tcp::{Hooks, Mode, SendQueue};

/// The hooks of one running `io_iso8583` gear.
pub(crate) struct IsoHooks {
    settings: Arc<IsoSettings>,
    network: Arc<Network>,
    emitter: Emitter,
    link: OutPort,
    availability: Availability,
    clock: Arc<dyn Clock>,
    born: Instant,
    /// Milliseconds from `born` to the last frame read.
    last_read_ms: AtomicU64,
}

impl IsoHooks {
    pub(crate) fn new(
        settings: Arc<IsoSettings>,
        network: Arc<Network>,
        ctx: &Context,
        link: OutPort,
    ) -> IsoHooks {
        let availability = ctx.availability();
        // A client takes messages once its link is up (and signed on).
        availability.set_available(settings.tcp.mode == Mode::Server);
        IsoHooks {
            settings,
            network,
            emitter: ctx.emitter(),
            link,
            availability,
            clock: ctx.clock(),
            born: Instant::now(),
            last_read_ms: AtomicU64::new(0),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A network-management request with this gear's TPDU and header, ready to frame.
    fn request(&self, code: &str) -> Option<Bytes> {
        match self.network.request(code, self.clock.now()) {
            Ok(iso) => Some(self.settings.wrap(
                &self.settings.tpdu_default,
                &self.settings.header_default,
                &iso,
            )),
            Err(e) => {
                self.emitter.stats().add_dropped("network_message", 1);
                tracing::warn!(code, error = %e, "Could not build a network-management message.");
                None
            }
        }
    }

    fn event(&self, event: &'static str, conn: u64, peer: SocketAddr, reason: Option<&str>) {
        let mut msg = FluxMsg::new();
        msg.meta.insert(CONN_EVENT_META, event.into());
        msg.meta.insert(CONN_ID, format_conn_id(conn).into());
        msg.meta.insert(PEER_IP, peer.ip().to_string().into());
        msg.meta.insert(PEER_PORT, peer.port().to_string().into());
        if let Some(reason) = reason {
            msg.meta.insert(CONN_REASON_META, reason.into());
        }
        msg.ts = sdk::unix_nanos(self.clock.now());
        if self.emitter.try_emit(self.link, msg).is_err() {
            self.emitter.stats().add_dropped("link_event_full", 1);
            tracing::debug!(event, "The engine is full; dropped a link event.");
        }
    }
}

impl Hooks for IsoHooks {
    fn inbound(&self, mut msg: FluxMsg) -> Option<FluxMsg> {
        self.last_read_ms
            .store(self.elapsed_ms(), Ordering::Relaxed);
        let settings = &self.settings;
        let skip = settings.tpdu_len + settings.header_len;
        if msg.raw.len() < skip {
            self.emitter.stats().add_dropped("short_frame", 1);
            tracing::warn!(
                len = msg.raw.len(),
                wanted = skip,
                "Dropped a frame shorter than its TPDU and protocol header."
            );
            return None;
        }
        let raw = std::mem::take(&mut msg.raw);
        if settings.tpdu_len > 0 {
            msg.meta
                .insert(TPDU_META, hex(&raw[..settings.tpdu_len]).into());
        }
        if settings.header_len > 0 {
            msg.meta
                .insert(RAW_HEADER_META, hex(&raw[settings.tpdu_len..skip]).into());
        }
        msg.raw = raw.slice(skip..);
        if settings.tcp.mode == Mode::Client
            && self.network.looks_like_0810(&msg.raw)
            && let Some(answer) = self.network.answer(&msg.raw)
        {
            // The answer to the gear's own sign-on or echo: it ends here.
            if answer.code == SIGN_ON {
                let accepted = answer.response == "00";
                if accepted {
                    tracing::info!("Signed on.");
                } else {
                    tracing::warn!(response = %answer.response, "Sign-on refused.");
                }
                self.availability.set_available(accepted);
            } else {
                tracing::debug!(code = %answer.code, response = %answer.response, "Network-management answer.");
            }
            return None;
        }
        Some(msg)
    }

    fn up(&self, conn: u64, peer: SocketAddr, queue: &SendQueue) {
        self.last_read_ms
            .store(self.elapsed_ms(), Ordering::Relaxed);
        self.event("conn.up", conn, peer, None);
        if self.settings.tcp.mode != Mode::Client {
            return;
        }
        if self.settings.sign_on {
            if let Some(request) = self.request(SIGN_ON) {
                queue.push(request);
            }
        } else {
            self.availability.set_available(true);
        }
    }

    fn down(&self, conn: u64, peer: SocketAddr, reason: &'static str) {
        if self.settings.tcp.mode == Mode::Client {
            self.availability.set_available(false);
        }
        self.event("conn.down", conn, peer, Some(reason));
    }

    fn keepalive(&self) -> Option<Bytes> {
        let every = self.settings.tcp.keepalive?;
        let idle = self
            .elapsed_ms()
            .saturating_sub(self.last_read_ms.load(Ordering::Relaxed));
        if Duration::from_millis(idle) < every {
            return None;
        }
        self.request(ECHO)
    }
}
