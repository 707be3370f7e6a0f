//! `fluxrig dlq list|show|replay`: the dead letters a NATS server keeps in `flux-dlq`.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use fluxrig::fluxmsg::{Codec, json};
use fluxrig::snake::{DeadLetter, NatsOptions, Pattern, Snake};

use super::{BAD_INPUT, Failure};

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// One line per dead letter, oldest first: sequence, where it gave up, deliveries, when,
    /// and why.
    List {
        #[command(flatten)]
        target: Target,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start at this sequence (to page: the last one shown plus one).
        #[arg(long, default_value_t = 0)]
        from: u64,
    },
    /// One dead letter in full: where it came from, why it gave up, its headers, and its
    /// fluxMsg as JSON.
    Show {
        /// Its sequence in `flux-dlq`, as `list` shows it.
        sequence: u64,
        #[command(flatten)]
        target: Target,
    },
    /// Publish dead letters again to the subject they came from, each removed once the
    /// stream acknowledged it: the sequences given, or else every one that `--rack` and
    /// `--gear` select (`--all` for every dead letter).
    Replay {
        /// Sequences in `flux-dlq`, as `list` shows them.
        sequences: Vec<u64>,
        #[command(flatten)]
        target: Target,
        /// Replay every dead letter when neither sequences, `--rack` nor `--gear` are given.
        #[arg(long)]
        all: bool,
    },
}

/// Which server, and which dead letters.
#[derive(Debug, Args)]
pub(crate) struct Target {
    /// The NATS server (`nats://127.0.0.1:4222`).
    #[arg(long)]
    nats: String,
    /// Only the dead letters of this rack.
    #[arg(long)]
    rack: Option<String>,
    /// Only those of this gear.
    #[arg(long)]
    gear: Option<String>,
}

impl Target {
    fn filter(&self) -> Result<Pattern, Failure> {
        Ok(Pattern::dead_letters_of(
            self.rack.as_deref(),
            self.gear.as_deref(),
        )?)
    }

    fn selects_all(&self) -> bool {
        self.rack.is_none() && self.gear.is_none()
    }
}

pub(crate) fn dlq(command: &DlqCommand, output: &mut dyn Write) -> Result<(), Failure> {
    let target = match command {
        DlqCommand::List { target, .. }
        | DlqCommand::Show { target, .. }
        | DlqCommand::Replay { target, .. } => target,
    };
    let filter = target.filter()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let options = NatsOptions::new(target.nats.as_str()).name("fluxrig-dlq");
        let snake = Snake::nats(options)
            .await
            .context("cannot connect to the NATS server of --nats")?;
        let result = match command {
            DlqCommand::List { limit, from, .. } => {
                list(&snake, &filter, *from, *limit, output).await
            }
            DlqCommand::Show { sequence, .. } => show(&snake, *sequence, output).await,
            DlqCommand::Replay { sequences, all, .. } => {
                if sequences.is_empty() && target.selects_all() && !*all {
                    Err(Failure {
                        status: BAD_INPUT,
                        error: anyhow::anyhow!(
                            "name the dead letters to replay: sequences, --rack, --gear, or --all"
                        ),
                    })
                } else {
                    replay(&snake, &filter, sequences, output).await
                }
            }
        };
        snake.close().await;
        result
    })
}

async fn list(
    snake: &Snake,
    filter: &Pattern,
    from: u64,
    limit: usize,
    output: &mut dyn Write,
) -> Result<(), Failure> {
    let total = snake.count_dead_letters(filter).await?;
    let letters = snake.dead_letters(filter, from, limit).await?;
    writeln!(
        output,
        "{:>8}  {:<40} {:>10}  {:<24} reason",
        "sequence", "rack.gear.port", "deliveries", "when"
    )?;
    for l in &letters {
        writeln!(
            output,
            "{:>8}  {:<40} {:>10}  {:<24} {}",
            l.sequence,
            place(l),
            l.deliveries
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            when(l),
            l.reason
        )?;
    }
    writeln!(
        output,
        "{} shown, {total} dead letter{} in all",
        letters.len(),
        if total == 1 { "" } else { "s" }
    )?;
    Ok(())
}

async fn show(snake: &Snake, sequence: u64, output: &mut dyn Write) -> Result<(), Failure> {
    let letter = snake
        .dead_letter(sequence)
        .await?
        .ok_or(fluxrig::snake::Error::DeadLetterNotFound(sequence))?;
    writeln!(output, "sequence:   {}", letter.sequence)?;
    writeln!(output, "gave up at: {}", place(&letter))?;
    writeln!(output, "reason:     {}", letter.reason)?;
    writeln!(
        output,
        "deliveries: {}",
        letter
            .deliveries
            .map_or_else(|| "-".to_owned(), |n| n.to_string())
    )?;
    writeln!(output, "when:       {}", when(&letter))?;
    writeln!(
        output,
        "from:       {} (stream {}, sequence {})",
        letter
            .origin
            .as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string),
        letter.stream.as_deref().unwrap_or("-"),
        letter
            .origin_sequence
            .map_or_else(|| "-".to_owned(), |n| n.to_string())
    )?;
    writeln!(output, "headers:")?;
    for (name, value) in letter.message.headers.iter() {
        writeln!(output, "  {name}: {value}")?;
    }
    let payload = &letter.message.payload;
    if !fluxrig::fluxmsg::pack::is_pack(payload) {
        return show_message(payload, "message", output);
    }
    // A lane's pack that gave up whole (its deliveries ran out): every message in it.
    match fluxrig::fluxmsg::pack::parts(payload) {
        Ok(parts) => {
            writeln!(output, "a pack of {} messages:", parts.len())?;
            for (i, part) in parts.iter().enumerate() {
                show_message(part, &format!("message {i}"), output)?;
            }
        }
        Err(e) => writeln!(output, "payload: {} bytes, not a pack ({e})", payload.len())?,
    }
    Ok(())
}

fn show_message(payload: &[u8], label: &str, output: &mut dyn Write) -> Result<(), Failure> {
    match Codec::default().decode(payload) {
        Ok(msg) => writeln!(output, "{label}:\n{}", json::to_string_pretty(&msg))?,
        Err(e) => writeln!(
            output,
            "{label}: {} bytes, not a fluxMsg ({e})",
            payload.len()
        )?,
    }
    Ok(())
}

async fn replay(
    snake: &Snake,
    filter: &Pattern,
    sequences: &[u64],
    output: &mut dyn Write,
) -> Result<(), Failure> {
    let sequences = if sequences.is_empty() {
        // Listed first, then replayed: what a replay dead-letters again comes after these and
        // is not replayed twice in one run.
        let mut all = Vec::new();
        let mut from = 0;
        loop {
            let page = snake.dead_letters(filter, from, 1000).await?;
            let Some(last) = page.last() else { break };
            from = last.sequence + 1;
            all.extend(page.iter().map(|l| l.sequence));
        }
        all
    } else {
        sequences.to_vec()
    };
    let mut replayed = 0;
    for sequence in sequences {
        let r = snake.replay_dead_letter(sequence).await.with_context(|| {
            format!("replaying dead letter #{sequence} ({replayed} replayed before it)")
        })?;
        writeln!(
            output,
            "replayed #{sequence} to {} ({} sequence {}{})",
            r.to,
            r.ack.stream,
            r.ack.sequence,
            if r.ack.duplicate {
                ", already there"
            } else {
                ""
            }
        )?;
        replayed += 1;
    }
    writeln!(output, "{replayed} replayed")?;
    Ok(())
}

fn place(l: &DeadLetter) -> String {
    format!(
        "{}.{}.{}",
        l.rack().unwrap_or("?"),
        l.gear().unwrap_or("?"),
        l.port().unwrap_or("?")
    )
}

fn when(l: &DeadLetter) -> String {
    l.time_ms.map_or_else(
        || "-".to_owned(),
        |ms| humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string(),
    )
}
