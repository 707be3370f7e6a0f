//! An ISO 8583 load generator for a switch or a host: `cargo run --release --example
//! iso8583_load -- --addr 127.0.0.1:18583 --rate 5000 --duration 10s`.
//!
//! It opens `--connections` TCP connections (2-byte big-endian length header, ISO 8583:1987
//! ASCII, as `builtin:spec87ascii`) and sends 0100 authorisations: Luhn-valid PANs under the
//! `--bins`, DE 7 (transmission time), DE 11 (a STAN per connection), DE 32 and DE 41 (a
//! terminal id per connection and run), so that every request's DE 11 + 7 + 32 + 41 is unique.
//!
//! Two modes:
//! - `--rate TPS`: open loop. Each connection sends its share of the rate on a schedule, by
//!   the clock, whether or not replies come back (a switch that slows down does not slow the
//!   offered load; what it cannot take piles up as outstanding requests and then timeouts).
//! - `--rate 0` (saturation): closed loop. Each connection keeps `--window` requests
//!   outstanding, and sends one more for each reply or timeout.
//!
//! Replies are matched by connection and STAN (DE 11); a reply whose PAN or DE 41 is not the
//! request's counts as `crossed`, one with no open request as `unmatched`; a request without a
//! reply within `--timeout` counts as a timeout. Latency runs from the moment the request is
//! handed to the socket to the moment its reply is read, in a log-bucketed histogram (1/64
//! relative precision). The result is printed as a table row and as one JSON line (the last
//! line of the output), which `scripts/bench-switch.sh` collects.
//!
//! Every wait is bounded: connecting, writing and reading give up after `--timeout`, and the
//! run ends at `--duration` plus at most one `--timeout` of draining, whatever the peer does.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::Parser;
use iso8583::{Message, Spec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Semaphore;

/// The largest frame a reply may announce; a longer one ends the connection (hostile peer).
const MAX_FRAME: usize = 16 * 1024;

#[derive(Debug, Parser)]
#[command(about = "ISO 8583 load generator: 0100s over TCP, replies matched by STAN")]
struct Args {
    /// Where the switch (or host) listens.
    #[arg(long, default_value = "127.0.0.1:18583")]
    addr: String,
    /// How many connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Offered requests per second over all connections; 0 = saturation (closed loop).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Closed loop: requests outstanding per connection.
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// How long to send.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// How long a request waits for its reply (and any connect, write or read).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Card ranges (PAN prefixes) to cycle through, comma-separated.
    #[arg(long, default_value = "411111,555555")]
    bins: String,
    /// Open loop: the most requests outstanding per connection; beyond it a due request is
    /// skipped (and counted), which bounds memory when the peer stops answering.
    #[arg(long, default_value_t = 200_000)]
    max_outstanding: usize,
    /// A name for the JSON line and the table row.
    #[arg(long, default_value = "run")]
    label: String,
    /// Worker threads of the generator's runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// A log-bucketed latency histogram of microseconds: exact below 128, then 64 buckets per
/// power of two (at most 1/64 relative error), reported as each bucket's upper bound.
#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

const SUB: u32 = 6; // 2^6 = 64 buckets per power of two
const LINEAR: u64 = 1 << (SUB + 1); // exact below 128

impl Histogram {
    fn new() -> Self {
        Histogram {
            counts: vec![0; Self::index(u64::MAX) + 1],
            total: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < LINEAR {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros(); // >= SUB + 1
        let shift = exp - SUB;
        let mantissa = (v >> shift) - (1 << SUB); // 0..64
        (LINEAR + u64::from(exp - SUB - 1) * (1 << SUB) + mantissa) as usize
    }

    /// The largest value that lands in bucket `i`.
    fn upper(i: usize) -> u64 {
        let i = i as u64;
        if i < LINEAR {
            return i;
        }
        let k = i - LINEAR;
        let exp = k / (1 << SUB) + u64::from(SUB) + 1;
        let mantissa = k % (1 << SUB) + (1 << SUB);
        let shift = exp - u64::from(SUB);
        let top = u128::from(mantissa + 1) << shift;
        u64::try_from(top - 1).unwrap_or(u64::MAX)
    }

    fn record(&mut self, micros: u64) {
        self.counts[Self::index(micros)] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (0..=1), in microseconds; 0 when empty.
    fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::upper(i).min(self.max);
            }
        }
        self.max
    }
}

/// What one connection counted.
#[derive(Clone)]
struct Counts {
    sent: u64,
    matched: u64,
    approved: u64,
    declined: u64,
    unmatched: u64,
    crossed: u64,
    timeouts: u64,
    skipped: u64,
    bad_frames: u64,
    codes: HashMap<String, u64>,
    hist: Histogram,
    failure: Option<String>,
}

impl Counts {
    fn new() -> Self {
        Counts {
            sent: 0,
            matched: 0,
            approved: 0,
            declined: 0,
            unmatched: 0,
            crossed: 0,
            timeouts: 0,
            skipped: 0,
            bad_frames: 0,
            codes: HashMap::new(),
            hist: Histogram::new(),
            failure: None,
        }
    }
}

/// A request waiting for its reply.
struct Open {
    sent: Instant,
    pan: String,
}

/// One connection's shared state: its open requests by STAN and its counts.
struct State {
    open: HashMap<u32, Open>,
    counts: Counts,
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Builds one connection's requests.
struct Requests {
    spec: Spec,
    bins: Vec<String>,
    terminal: String,
    conn: usize,
    seq: u64,
}

impl Requests {
    /// The next request: its STAN, PAN and framed bytes.
    fn next(&mut self) -> anyhow::Result<(u32, String, Vec<u8>)> {
        self.seq += 1;
        let stan = (self.seq % 999_999) as u32 + 1;
        let bin = &self.bins[(self.seq as usize) % self.bins.len()];
        let pan = luhn_pan(bin, self.conn as u64 * 10_000_000 + self.seq);
        let mut msg = Message::new("0100");
        msg.set(2, pan.as_str());
        msg.set(3, "000000");
        msg.set(4, format!("{:012}", 100 + self.seq % 250_000).as_str());
        msg.set(7, transmission_time().as_str());
        msg.set(11, format!("{stan:06}").as_str());
        msg.set(32, "123456");
        msg.set(41, self.terminal.as_str());
        msg.set(49, "978");
        let body = self.spec.pack_to_vec(&msg).context("packing a 0100")?;
        let len = u16::try_from(body.len()).context("a request longer than 65535 bytes")?;
        let mut framed = Vec::with_capacity(body.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&body);
        Ok((stan, pan, framed))
    }
}

/// A 16-digit PAN: `bin`, then `account` (as many digits as fit), then a Luhn check digit.
fn luhn_pan(bin: &str, account: u64) -> String {
    let width = 15usize.saturating_sub(bin.len());
    let digits = format!("{account:0width$}");
    let mut pan = format!("{bin}{}", &digits[digits.len() - width..]);
    // BINs here are digits, so there is a check digit.
    let check = iso8583::luhn_check_digit(pan.as_bytes()).unwrap_or(0);
    pan.push(char::from(b'0' + check));
    pan
}

/// DE 7: MMDDhhmmss, UTC.
fn transmission_time() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    format!(
        "{month:02}{day:02}{:02}{:02}{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Reads replies until the connection closes, a bad frame arrives or `until` passes.
async fn reader(
    mut rd: OwnedReadHalf,
    state: Shared,
    window: Option<Arc<Semaphore>>,
    spec: Spec,
    terminal: String,
    until: tokio::time::Instant,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match tokio::time::timeout_at(until, rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Err(_) => return,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                lock(&state)
                    .counts
                    .failure
                    .get_or_insert(format!("read: {e}"));
                return;
            }
        };
        let now = Instant::now();
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        let mut released = 0;
        {
            let mut st = lock(&state);
            while buf.len() - at >= 2 {
                let len = usize::from(u16::from_be_bytes([buf[at], buf[at + 1]]));
                if len == 0 || len > MAX_FRAME {
                    st.counts.bad_frames += 1;
                    st.counts
                        .failure
                        .get_or_insert(format!("a reply frame of {len} bytes"));
                    return;
                }
                if buf.len() - at - 2 < len {
                    break;
                }
                let body = &buf[at + 2..at + 2 + len];
                at += 2 + len;
                let Ok(reply) = spec.unpack(body) else {
                    st.counts.bad_frames += 1;
                    continue;
                };
                let stan = reply.text(11).and_then(|s| s.parse::<u32>().ok());
                let Some(open) = stan.and_then(|s| st.open.remove(&s)) else {
                    st.counts.unmatched += 1;
                    continue;
                };
                released += 1;
                if reply.text(2) != Some(open.pan.as_str())
                    || reply.text(41) != Some(terminal.as_str())
                    || !reply.mti().starts_with("01")
                    || !reply.mti().ends_with("10")
                {
                    st.counts.crossed += 1;
                    continue;
                }
                let micros = now.saturating_duration_since(open.sent).as_micros();
                st.counts
                    .hist
                    .record(u64::try_from(micros).unwrap_or(u64::MAX));
                st.counts.matched += 1;
                let code = reply.text(39).unwrap_or("--");
                if code == "00" {
                    st.counts.approved += 1;
                } else {
                    st.counts.declined += 1;
                }
                if let Some(n) = st.counts.codes.get_mut(code) {
                    *n += 1;
                } else if st.counts.codes.len() < 100 {
                    st.counts.codes.insert(code.to_owned(), 1);
                }
            }
        }
        buf.drain(..at);
        if let Some(w) = &window {
            w.add_permits(released);
        }
    }
}

/// Every 50 ms, turns requests older than `timeout` into timeouts (and frees their window).
async fn sweeper(
    state: Shared,
    window: Option<Arc<Semaphore>>,
    timeout: Duration,
    until: tokio::time::Instant,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while tokio::time::Instant::now() < until {
        tick.tick().await;
        let now = Instant::now();
        let expired = {
            let mut st = lock(&state);
            let before = st.open.len();
            st.open
                .retain(|_, o| now.saturating_duration_since(o.sent) < timeout);
            let expired = before - st.open.len();
            st.counts.timeouts += expired as u64;
            expired
        };
        if let Some(w) = &window {
            w.add_permits(expired);
        }
    }
}

/// Sends for `duration`: on the schedule of `rate` (per connection), or, without a rate,
/// whenever the window has room.
#[allow(clippy::too_many_arguments)]
async fn writer(
    mut wr: OwnedWriteHalf,
    state: Shared,
    mut requests: Requests,
    rate: Option<f64>,
    window: Option<Arc<Semaphore>>,
    args_timeout: Duration,
    max_outstanding: usize,
    duration: Duration,
) {
    let start = tokio::time::Instant::now();
    let end = start + duration;
    let mut batch = Vec::with_capacity(64 * 1024);
    let mut due_sent: u64 = 0;
    loop {
        let now = tokio::time::Instant::now();
        if now >= end {
            break;
        }
        // How many to send now.
        let want = match (rate, &window) {
            (Some(r), _) => {
                let due = ((now - start).as_secs_f64() * r) as u64 + 1;
                let want = due.saturating_sub(due_sent);
                due_sent = due;
                want
            }
            (None, Some(w)) => {
                let permit =
                    tokio::time::timeout_at(end, Arc::clone(w).acquire_many_owned(1)).await;
                let Ok(Ok(permit)) = permit else { break };
                permit.forget();
                let mut n = 1;
                while n < 256 {
                    match w.try_acquire() {
                        Ok(p) => {
                            p.forget();
                            n += 1;
                        }
                        Err(_) => break,
                    }
                }
                n
            }
            (None, None) => break,
        };
        batch.clear();
        let mut pending = Vec::with_capacity(want as usize);
        for _ in 0..want {
            match requests.next() {
                Ok((stan, pan, framed)) => {
                    batch.extend_from_slice(&framed);
                    pending.push((stan, pan));
                }
                Err(e) => {
                    lock(&state).counts.failure.get_or_insert(e.to_string());
                    return;
                }
            }
        }
        if !pending.is_empty() {
            let sent = Instant::now();
            {
                let mut st = lock(&state);
                for (stan, pan) in pending {
                    if rate.is_some() && st.open.len() >= max_outstanding {
                        st.counts.skipped += 1;
                        continue;
                    }
                    if st.open.insert(stan, Open { sent, pan }).is_some() {
                        // A STAN that wrapped onto a request still open: the old one is lost.
                        st.counts.timeouts += 1;
                    }
                    st.counts.sent += 1;
                }
            }
            match tokio::time::timeout(args_timeout, wr.write_all(&batch)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    lock(&state)
                        .counts
                        .failure
                        .get_or_insert(format!("write: {e}"));
                    return;
                }
                Err(_) => {
                    lock(&state)
                        .counts
                        .failure
                        .get_or_insert("write: timed out".to_owned());
                    return;
                }
            }
        }
        if let Some(r) = rate {
            // Sleep until the next request is due (timers tick by the millisecond, so
            // several may be due at once: they go out as one write).
            let next = start + Duration::from_secs_f64(due_sent as f64 / r);
            tokio::time::sleep_until(next.min(end)).await;
        }
    }
    // Keep the write half open until the replies are in; dropping it would half-close.
    tokio::time::sleep_until(end + args_timeout).await;
    drop(wr);
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.connections == 0 || args.connections > 10_000 {
        bail!("--connections must be 1..=10000");
    }
    if args.window == 0 || args.window > 100_000 {
        bail!("--window must be 1..=100000");
    }
    let bins: Vec<String> = args
        .bins
        .split(',')
        .map(|b| b.trim().to_owned())
        .filter(|b| !b.is_empty())
        .collect();
    if bins.is_empty()
        || bins
            .iter()
            .any(|b| b.len() > 12 || !b.bytes().all(|c| c.is_ascii_digit()))
    {
        bail!("--bins: comma-separated digit prefixes of at most 12 digits");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(run(args, bins))
}

async fn run(args: Args, bins: Vec<String>) -> anyhow::Result<()> {
    let spec = Spec::builtin("moov:spec87ascii").context("the built-in spec87ascii")?;
    let run_id = std::process::id() % 1000;
    let mut streams = Vec::new();
    for c in 0..args.connections {
        let stream = tokio::time::timeout(args.timeout, TcpStream::connect(&args.addr))
            .await
            .with_context(|| format!("connecting to {} timed out", args.addr))?
            .with_context(|| format!("cannot connect to {}", args.addr))?;
        stream.set_nodelay(true)?;
        streams.push((c, stream));
    }
    let rate = (args.rate > 0).then(|| args.rate as f64 / args.connections as f64);
    let started = Instant::now();
    let until = tokio::time::Instant::now() + args.duration + args.timeout;
    let mut states = Vec::new();
    let mut tasks = Vec::new();
    for (c, stream) in streams {
        let terminal = format!("L{run_id:03}{c:04}");
        let (rd, wr) = stream.into_split();
        let state: Shared = Arc::new(Mutex::new(State {
            open: HashMap::new(),
            counts: Counts::new(),
        }));
        let window = rate
            .is_none()
            .then(|| Arc::new(Semaphore::new(args.window)));
        let requests = Requests {
            spec: spec.clone(),
            bins: bins.clone(),
            terminal: terminal.clone(),
            conn: c,
            seq: 0,
        };
        tasks.push(tokio::spawn(reader(
            rd,
            Arc::clone(&state),
            window.clone(),
            spec.clone(),
            terminal,
            until,
        )));
        tasks.push(tokio::spawn(sweeper(
            Arc::clone(&state),
            window.clone(),
            args.timeout,
            until,
        )));
        tasks.push(tokio::spawn(writer(
            wr,
            Arc::clone(&state),
            requests,
            rate,
            window,
            args.timeout,
            args.max_outstanding,
            args.duration,
        )));
        states.push(state);
    }
    // The readers stop early once everything sent has been answered.
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = tokio::time::Instant::now();
        let sending_done = started.elapsed() >= args.duration;
        let all_in = states.iter().all(|s| lock(s).open.is_empty());
        if now >= until || (sending_done && all_in) {
            break;
        }
    }
    let elapsed = started.elapsed().min(args.duration).as_secs_f64();
    for t in &tasks {
        t.abort();
    }
    let mut total = Counts::new();
    for s in &states {
        let mut st = lock(s);
        let left = st.open.len() as u64;
        st.counts.timeouts += left;
        let c = &st.counts;
        total.sent += c.sent;
        total.matched += c.matched;
        total.approved += c.approved;
        total.declined += c.declined;
        total.unmatched += c.unmatched;
        total.crossed += c.crossed;
        total.timeouts += c.timeouts;
        total.skipped += c.skipped;
        total.bad_frames += c.bad_frames;
        total.hist.merge(&c.hist);
        for (k, v) in &c.codes {
            *total.codes.entry(k.clone()).or_default() += v;
        }
        if total.failure.is_none() {
            total.failure.clone_from(&c.failure);
        }
    }
    report(&args, &total, elapsed)
}

fn report(args: &Args, t: &Counts, elapsed: f64) -> anyhow::Result<()> {
    let per_s = |n: u64| {
        if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        }
    };
    let ms = |us: u64| us as f64 / 1000.0;
    let (p50, p99, p999) = (
        t.hist.quantile(0.50),
        t.hist.quantile(0.99),
        t.hist.quantile(0.999),
    );
    let mode = if args.rate > 0 {
        format!("{} tps", args.rate)
    } else {
        format!("saturation (window {})", args.window)
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<16} {:<24} {:>9} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7}",
        "label",
        "offered",
        "sent/s",
        "matched/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "timeouts",
        "unmatched",
        "crossed"
    )?;
    writeln!(
        out,
        "{:<16} {:<24} {:>9.0} {:>11.0} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8} {:>9} {:>7}",
        args.label,
        mode,
        per_s(t.sent),
        per_s(t.matched),
        ms(p50),
        ms(p99),
        ms(p999),
        ms(t.hist.max),
        t.timeouts,
        t.unmatched,
        t.crossed
    )?;
    if let Some(f) = &t.failure {
        writeln!(out, "note: {f}")?;
    }
    let mut codes: Vec<_> = t.codes.iter().collect();
    codes.sort();
    let json = serde_json::json!({
        "label": args.label,
        "rate": args.rate,
        "window": if args.rate == 0 { Some(args.window) } else { None },
        "connections": args.connections,
        "duration_s": elapsed,
        "sent": t.sent,
        "sent_per_s": per_s(t.sent),
        "matched": t.matched,
        "matched_per_s": per_s(t.matched),
        "approved": t.approved,
        "declined": t.declined,
        "p50_ms": ms(p50),
        "p99_ms": ms(p99),
        "p999_ms": ms(p999),
        "max_ms": ms(t.hist.max),
        "timeouts": t.timeouts,
        "unmatched": t.unmatched,
        "crossed": t.crossed,
        "skipped": t.skipped,
        "bad_frames": t.bad_frames,
        "codes": codes.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "failure": t.failure,
    });
    writeln!(out, "{json}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `pan` passes the Luhn check.
    fn luhn_ok(pan: &str) -> bool {
        iso8583::luhn_valid(pan.as_bytes())
    }

    #[test]
    fn pans_pass_the_luhn_check() {
        for account in [0, 1, 42, 9_999_999, 123_456_789_012] {
            let pan = luhn_pan("411111", account);
            assert_eq!(pan.len(), 16);
            assert!(luhn_ok(&pan), "{pan}");
        }
        assert!(luhn_ok("4111111111111111"));
        assert!(!luhn_ok("4111111111111112"));
    }

    #[test]
    fn the_histogram_is_within_its_precision() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        for (q, want) in [(0.5, 50_000.0), (0.99, 99_000.0), (0.999, 99_900.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 1.0 / 32.0, "{q}: {got}");
        }
        for v in [0, 1, 127, 128, 129, 1000, 65_535, 1 << 40, u64::MAX] {
            let i = Histogram::index(v);
            assert!(Histogram::upper(i) >= v, "{v}");
            assert!(i == 0 || Histogram::upper(i - 1) < v, "{v}");
        }
    }
}
