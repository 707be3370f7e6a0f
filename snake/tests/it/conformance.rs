//! The conformance suite: the semantics every backend must have, written once against
//! [`Snake`] and run here on the in-process backend (on paused time, so waits cost nothing).
//! The NATS backend runs the same functions against a real server.

use std::collections::HashSet;
use std::time::Duration;

use snake::{
    ConnectionState, ConsumerConfig, DeliverPolicy, Error, KvConfig, KvOperation, Message, Pattern,
    Snake, Storage, StreamConfig, Subject, header,
};

fn subject(s: &str) -> Subject {
    Subject::parse(s).expect("valid subject")
}

fn pattern(s: &str) -> Pattern {
    Pattern::parse(s).expect("valid pattern")
}

/// A stream capturing `flux.msg.>` under a name unique to the test.
async fn msg_stream(snake: &Snake, name: &str) {
    let cfg = StreamConfig::new(name, [Pattern::msg_all()]).expect("config");
    snake.create_stream(cfg).await.expect("stream");
}

/// Nothing more arrives within `wait`: a window in which an absence is checked, exact on
/// paused time (the memory backend) and a sample on a real server.
async fn quiet(consumer: &mut snake::Consumer, wait: Duration) {
    if let Ok(d) = tokio::time::timeout(wait, consumer.next()).await {
        panic!("unexpected delivery: {d:?}");
    }
}

pub(crate) async fn wildcards(snake: &Snake) {
    let mut one = snake
        .subscribe(pattern("flux.msg.*.acceptor.>"))
        .await
        .expect("sub");
    let mut all = snake.subscribe(Pattern::msg_all()).await.expect("sub");
    let mut exact = snake
        .subscribe(pattern("flux.msg.r1.acceptor.in"))
        .await
        .expect("sub");
    let sent = [
        "flux.msg.r1.acceptor.in",
        "flux.msg.r2.acceptor.out",
        "flux.msg.r1.issuer.in",
        "flux.msgx.r1.acceptor.in",
    ];
    for s in sent {
        snake
            .publish(Message::new(subject(s), &b"x"[..]))
            .await
            .expect("publish");
    }
    // A marker that every pattern but `exact` sees, so that the reads below end.
    snake
        .publish(Message::new(subject("flux.msg.end.acceptor.end"), &b""[..]))
        .await
        .expect("publish");
    snake
        .publish(Message::new(
            subject("flux.msg.r1.acceptor.in"),
            &b"end"[..],
        ))
        .await
        .expect("publish");
    async fn until_end(sub: &mut snake::Subscription, end: &str) -> Vec<String> {
        let mut got = Vec::new();
        while let Some(m) = sub.next().await {
            got.push(m.subject.to_string());
            if got.last().map(String::as_str) == Some(end) && m.payload != b"x"[..] {
                break;
            }
        }
        got
    }
    assert_eq!(
        until_end(&mut one, "flux.msg.r1.acceptor.in").await,
        [
            "flux.msg.r1.acceptor.in",
            "flux.msg.r2.acceptor.out",
            "flux.msg.end.acceptor.end",
            "flux.msg.r1.acceptor.in"
        ]
    );
    assert_eq!(
        until_end(&mut all, "flux.msg.r1.acceptor.in").await,
        [
            "flux.msg.r1.acceptor.in",
            "flux.msg.r2.acceptor.out",
            "flux.msg.r1.issuer.in",
            "flux.msg.end.acceptor.end",
            "flux.msg.r1.acceptor.in"
        ]
    );
    assert_eq!(
        until_end(&mut exact, "flux.msg.r1.acceptor.in").await,
        ["flux.msg.r1.acceptor.in", "flux.msg.r1.acceptor.in"]
    );
}

pub(crate) async fn per_subject_order(snake: &Snake, stream: &str) {
    msg_stream(snake, stream).await;
    let to = subject("flux.msg.r1.g.in");
    let mut sub = snake
        .subscribe(Pattern::from(to.clone()))
        .await
        .expect("sub");
    let mut publisher = snake.stream_publisher(64);
    for i in 0..1_000u32 {
        publisher
            .publish(Message::new(to.clone(), i.to_be_bytes().to_vec()))
            .await
            .expect("publish");
    }
    let acks = publisher.flush().await.expect("flush");
    assert!(acks.iter().all(|a| !a.duplicate));
    let mut batch = Vec::new();
    while batch.len() < 1_000 {
        assert!(sub.next_batch(&mut batch, 256).await > 0);
    }
    let core: Vec<u32> = batch
        .iter()
        .map(|m| u32::from_be_bytes(m.payload[..].try_into().expect("4 bytes")))
        .collect();
    assert_eq!(core, (0..1_000).collect::<Vec<_>>());
    let mut consumer = snake
        .consumer(stream, ConsumerConfig::new(Pattern::from(to)))
        .await
        .expect("consumer");
    for i in 0..1_000u32 {
        let d = consumer.next().await.expect("delivery");
        assert_eq!(d.message.payload, i.to_be_bytes()[..]);
        d.ack().await.expect("ack");
    }
}

/// A stream with one message `a` on `flux.msg.r1.g.in`, and a consumer of it with
/// `ack_wait` (and room for ten deliveries).
async fn one_message(snake: &Snake, stream: &str, ack_wait: Duration) -> snake::Consumer {
    msg_stream(snake, stream).await;
    let to = subject("flux.msg.r1.g.in");
    snake
        .stream_publish(Message::new(to.clone(), &b"a"[..]))
        .await
        .expect("publish");
    let cfg = ConsumerConfig::new(to.into())
        .ack_wait(ack_wait)
        .max_deliver(10);
    snake.consumer(stream, cfg).await.expect("consumer")
}

pub(crate) async fn ack_means_no_redelivery(snake: &Snake, stream: &str) {
    let mut consumer = one_message(snake, stream, Duration::from_millis(300)).await;
    let d = consumer.next().await.expect("delivery");
    assert_eq!(d.deliveries, 1);
    d.ack().await.expect("ack");
    quiet(&mut consumer, Duration::from_secs(1)).await;
}

pub(crate) async fn in_progress_holds_off_redelivery(snake: &Snake, stream: &str) {
    let mut consumer = one_message(snake, stream, Duration::from_millis(600)).await;
    let d = consumer.next().await.expect("delivery");
    // Three times the ack wait passes while the message is being worked on: with a progress
    // report every third of it, it is never delivered again.
    for _ in 0..9 {
        quiet(&mut consumer, Duration::from_millis(200)).await;
        d.in_progress().await.expect("in progress");
    }
    d.ack().await.expect("ack");
    quiet(&mut consumer, Duration::from_secs(1)).await;
}

pub(crate) async fn nak_and_ack_wait_mean_redelivery(snake: &Snake, stream: &str) {
    let mut consumer = one_message(snake, stream, Duration::from_millis(300)).await;
    let d = consumer.next().await.expect("delivery");
    d.nak(Duration::ZERO).await.expect("nak");
    let d = consumer.next().await.expect("redelivery after nak");
    assert_eq!((d.message.payload.as_ref(), d.deliveries), (&b"a"[..], 2));
    // Not acked at all: delivered again once the ack wait has passed.
    drop(d);
    let d = consumer.next().await.expect("redelivery after ack wait");
    assert_eq!(d.deliveries, 3);
    d.ack().await.expect("ack");
}

pub(crate) async fn max_deliver_leads_to_dead_letter(snake: &Snake, stream: &str) {
    msg_stream(snake, stream).await;
    let to = subject("flux.msg.r1.g.in");
    let dlq = Subject::dead_letter("r1", "g", "in").expect("dlq");
    snake
        .create_stream(StreamConfig::dead_letters())
        .await
        .expect("dead-letter stream");
    let mut letters = snake.subscribe(Pattern::dead_letters()).await.expect("sub");
    snake
        .stream_publish(Message::new(to.clone(), &b"poison"[..]).with_id("m-1"))
        .await
        .expect("publish");
    snake
        .stream_publish(Message::new(to.clone(), &b"bad"[..]).with_id("m-2"))
        .await
        .expect("publish");
    let cfg = ConsumerConfig::new(to.clone().into())
        .ack_wait(Duration::from_millis(300))
        .max_deliver(3)
        .dead_letter(dlq.clone());
    let mut consumer = snake.consumer(stream, cfg).await.expect("consumer");
    let mut seen = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(2), consumer.next()).await;
        let Ok(d) = next else { break };
        let d = d.expect("delivery");
        seen.push((d.message.id().map(str::to_owned), d.deliveries));
        if d.message.payload == b"bad"[..] {
            d.term("unparsable").await.expect("term");
        } else {
            d.nak(Duration::ZERO).await.expect("nak");
        }
    }
    let poison: Vec<u32> = seen
        .iter()
        .filter(|(id, _)| id.as_deref() == Some("m-1"))
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(
        poison,
        [1, 2, 3],
        "delivered max_deliver times, then no more"
    );
    let mut reasons = HashSet::new();
    for _ in 0..2 {
        let letter = tokio::time::timeout(Duration::from_secs(2), letters.next())
            .await
            .expect("a dead letter")
            .expect("open");
        assert_eq!(letter.subject, dlq);
        assert_eq!(letter.headers.get(header::DLQ_SUBJECT), Some(to.as_str()));
        assert_eq!(letter.headers.get(header::DLQ_STREAM), Some(stream));
        let id = letter
            .headers
            .get(header::DLQ_MSG_ID)
            .expect("id kept")
            .to_owned();
        let reason = letter.headers.get(header::DLQ_REASON).expect("reason");
        reasons.insert((
            id,
            reason.to_owned(),
            letter
                .headers
                .get(header::DLQ_DELIVERIES)
                .map(str::to_owned),
        ));
    }
    assert!(
        reasons.contains(&(
            "m-1".to_owned(),
            "max_deliver".to_owned(),
            Some("3".to_owned())
        )),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(
            "m-2".to_owned(),
            "terminated: unparsable".to_owned(),
            Some("1".to_owned())
        )),
        "{reasons:?}"
    );
    // Kept, acknowledged by the dead-letter stream, not only sent to who listens.
    assert_eq!(
        snake
            .count_dead_letters(&Pattern::dead_letters())
            .await
            .expect("count"),
        2
    );
    assert_eq!(snake.dropped(), (0, 0));
}

/// Two messages that give up (one terminated, one out of deliveries) and one that does not:
/// the dead letters are counted and listed by rack and gear, shown by sequence, and a replay
/// delivers the message again and removes its dead letter, once.
pub(crate) async fn dead_letters_are_kept_listed_and_replayed(snake: &Snake, stream: &str) {
    msg_stream(snake, stream).await;
    snake
        .create_stream(StreamConfig::dead_letters())
        .await
        .expect("dead-letter stream");
    let to = subject("flux.msg.r0.src.out");
    for (id, payload) in [("p-1", "poison"), ("p-2", "bad"), ("p-3", "good")] {
        snake
            .stream_publish(Message::new(to.clone(), payload.as_bytes().to_vec()).with_id(id))
            .await
            .expect("publish");
    }
    let cfg = ConsumerConfig::new(to.clone().into())
        .durable("sink-in")
        .expect("durable")
        .ack_wait(Duration::from_millis(300))
        .max_deliver(2)
        .dead_letter(Subject::dead_letter("r1", "sink", "in").expect("dlq"));
    let mut consumer = snake.consumer(stream, cfg).await.expect("consumer");
    let mut good = 0;
    while let Ok(d) = tokio::time::timeout(Duration::from_secs(2), consumer.next()).await {
        let d = d.expect("delivery");
        match &d.message.payload[..] {
            b"bad" => d.term("cannot parse").await.expect("term"),
            b"poison" => d.nak(Duration::ZERO).await.expect("nak"),
            _ => {
                good += 1;
                d.ack().await.expect("ack");
            }
        }
    }
    assert_eq!(good, 1);

    let of = |rack, gear| Pattern::dead_letters_of(rack, gear).expect("filter");
    let count = |p: Pattern| async move { snake.count_dead_letters(&p).await.expect("count") };
    assert_eq!(count(of(None, None)).await, 2);
    assert_eq!(count(of(Some("r1"), None)).await, 2);
    assert_eq!(count(of(Some("r1"), Some("sink"))).await, 2);
    assert_eq!(count(of(None, Some("sink"))).await, 2);
    assert_eq!(count(of(Some("r2"), None)).await, 0);
    assert_eq!(count(of(None, Some("src"))).await, 0);

    let letters = snake
        .dead_letters(&of(Some("r1"), None), 0, 10)
        .await
        .expect("list");
    let mut seen: Vec<(&str, &str, Option<u32>)> = letters
        .iter()
        .map(|l| {
            (
                std::str::from_utf8(&l.message.payload).expect("text"),
                l.reason.as_str(),
                l.deliveries,
            )
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        [
            ("bad", "terminated: cannot parse", Some(1)),
            ("poison", "max_deliver", Some(2))
        ]
    );
    for l in &letters {
        assert_eq!(l.origin.as_ref(), Some(&to));
        assert_eq!(
            (l.rack(), l.gear(), l.port()),
            (Some("r1"), Some("sink"), Some("in"))
        );
        assert_eq!(l.stream.as_deref(), Some(stream));
        assert!(l.time_ms.is_some_and(|t| t > 0));
    }
    // Paging: one at a time from the last sequence plus one.
    let first = snake
        .dead_letters(&of(None, None), 0, 1)
        .await
        .expect("page");
    let rest = snake
        .dead_letters(&of(None, None), first[0].sequence + 1, 10)
        .await
        .expect("page");
    assert_eq!(first.len() + rest.len(), 2);

    let poison = letters
        .iter()
        .find(|l| l.message.payload == b"poison"[..])
        .expect("poison");
    let shown = snake
        .dead_letter(poison.sequence)
        .await
        .expect("show")
        .expect("there");
    // Header order is the backend's.
    let key = |l: &snake::DeadLetter| (l.sequence, l.reason.clone(), l.message.payload.clone());
    assert_eq!(key(&shown), key(poison));
    assert_eq!(shown.original().id(), Some("p-1"));

    let replayed = snake
        .replay_dead_letter(poison.sequence)
        .await
        .expect("replay");
    assert_eq!(replayed.to, to);
    assert!(!replayed.ack.duplicate);
    let d = tokio::time::timeout(Duration::from_secs(2), consumer.next())
        .await
        .expect("the replayed message")
        .expect("delivery");
    assert_eq!((&d.message.payload[..], d.deliveries), (&b"poison"[..], 1));
    assert!(d.message.headers.get(header::DLQ_REASON).is_none());
    d.ack().await.expect("ack");
    assert_eq!(count(of(None, None)).await, 1);
    assert!(
        snake
            .dead_letter(poison.sequence)
            .await
            .expect("show")
            .is_none()
    );
    let again = snake.replay_dead_letter(poison.sequence).await;
    assert!(
        matches!(again, Err(Error::DeadLetterNotFound(n)) if n == poison.sequence),
        "{again:?}"
    );
    quiet(&mut consumer, Duration::from_secs(1)).await;
}

/// Parts cut from one delivery (the failed messages of a pack) are dead letters of their own,
/// marked with their part, and the delivery is acked: it does not come back. Giving up the
/// same parts again (a redelivery before the ack landed) keeps each once.
pub(crate) async fn parts_of_a_delivery_are_dead_lettered_each_once(snake: &Snake, stream: &str) {
    msg_stream(snake, stream).await;
    snake
        .create_stream(StreamConfig::dead_letters())
        .await
        .expect("dead-letter stream");
    let to = subject("flux.msg.r0.src.out");
    snake
        .stream_publish(Message::new(to.clone(), b"a|b|c".to_vec()).with_id("pack-1"))
        .await
        .expect("publish");
    let cfg = ConsumerConfig::new(to.clone().into())
        .durable("parts")
        .expect("durable")
        .ack_wait(Duration::from_millis(500))
        .dead_letter(Subject::dead_letter("r1", "sink", "in").expect("dlq"));
    let mut consumer = snake.consumer(stream, cfg).await.expect("consumer");
    let d = tokio::time::timeout(Duration::from_secs(2), consumer.next())
        .await
        .expect("a delivery")
        .expect("delivery");
    let sequence = d.sequence;
    let payload = d.message.payload.clone();
    // Not acked in time: delivered again, and both deliveries give the parts up.
    let again = tokio::time::timeout(Duration::from_secs(3), consumer.next())
        .await
        .expect("a redelivery")
        .expect("delivery");
    assert_eq!((again.sequence, again.deliveries), (sequence, 2));
    let parts = |d: snake::Delivery| {
        d.dead_letter_parts(vec![
            (0, payload.slice(0..1), "bad a".to_owned()),
            (2, payload.slice(4..5), "bad c".to_owned()),
        ])
    };
    parts(d).await.expect("dead-lettered");
    parts(again).await.expect("dead-lettered again");
    quiet(&mut consumer, Duration::from_secs(1)).await;

    let all = Pattern::dead_letters_of(None, None).expect("filter");
    let mut letters = snake.dead_letters(&all, 0, 10).await.expect("list");
    letters.sort_by_key(|l| l.part);
    let seen: Vec<_> = letters
        .iter()
        .map(|l| (l.part, &l.message.payload[..], l.reason.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (Some(0), &b"a"[..], "terminated: bad a"),
            (Some(2), &b"c"[..], "terminated: bad c")
        ]
    );
    for l in &letters {
        assert_eq!(l.origin.as_ref(), Some(&to));
        assert_eq!(l.origin_sequence, Some(sequence));
        // A part replays as the message it was, not as the pack.
        let original = l.original();
        assert_eq!(original.subject, to);
        assert!(original.headers.get(header::DLQ_PART).is_none());
    }

    assert_eq!(snake.count_dead_letters(&all).await.expect("count"), 2);
}

/// A queue group shares the messages among its members, each once; a plain subscriber
/// still sees them all.
pub(crate) async fn a_queue_group_gets_each_message_once(snake: &Snake) {
    let mut one = snake
        .subscribe_queue(pattern("flux.agent.>"), "mixers")
        .await
        .expect("member");
    let mut two = snake
        .subscribe_queue(pattern("flux.agent.>"), "mixers")
        .await
        .expect("member");
    let mut all = snake.subscribe(pattern("flux.agent.>")).await.expect("sub");
    let to = subject("flux.agent.hello");
    for i in 0..20u8 {
        snake
            .publish(Message::new(to.clone(), vec![i]))
            .await
            .expect("publish");
    }
    let mut plain = Vec::new();
    for _ in 0..20 {
        let m = tokio::time::timeout(Duration::from_secs(2), all.next())
            .await
            .expect("a message")
            .expect("open");
        plain.push(m.payload[0]);
    }
    assert_eq!(plain, (0..20).collect::<Vec<u8>>());
    let mut shared = Vec::new();
    for member in [&mut one, &mut two] {
        while let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(300), member.next()).await
        {
            shared.push(m.payload[0]);
        }
    }
    shared.sort_unstable();
    assert_eq!(
        shared,
        (0..20).collect::<Vec<u8>>(),
        "each message to one member, once"
    );
    assert!(
        snake
            .subscribe_queue(pattern("flux.agent.>"), "a.b")
            .await
            .is_err(),
        "a group name is a token"
    );
}

/// A durable created ahead of its reader starts at the messages published from then on, and
/// its reader, opened later, gets them; nothing is taken from it meanwhile.
pub(crate) async fn a_durable_created_ahead_keeps_what_came_after(snake: &Snake, stream: &str) {
    msg_stream(snake, stream).await;
    let to = subject("flux.msg.r0.src.out");
    snake
        .stream_publish(Message::new(to.clone(), &b"before"[..]))
        .await
        .expect("publish");
    let cfg = ConsumerConfig::new(to.clone().into())
        .durable("ahead")
        .expect("durable")
        .deliver(DeliverPolicy::New)
        .ack_wait(Duration::from_millis(300));
    snake
        .create_consumer(stream, cfg.clone())
        .await
        .expect("created ahead");
    // Again: a no-op.
    snake
        .create_consumer(stream, cfg.clone())
        .await
        .expect("exists");
    for payload in ["after-1", "after-2"] {
        snake
            .stream_publish(Message::new(to.clone(), payload.as_bytes().to_vec()))
            .await
            .expect("publish");
    }
    let mut reader = snake.consumer(stream, cfg).await.expect("the reader");
    for want in ["after-1", "after-2"] {
        let d = reader.next().await.expect("delivery");
        assert_eq!((&d.message.payload[..], d.deliveries), (want.as_bytes(), 1));
        d.ack().await.expect("ack");
    }
    quiet(&mut reader, Duration::from_secs(1)).await;
    let ephemeral = snake
        .create_consumer(stream, ConsumerConfig::new(to.into()))
        .await;
    assert!(
        matches!(ephemeral, Err(Error::InvalidName { .. })),
        "{ephemeral:?}"
    );
}

/// A delivery whose ack wait ran out on its last allowed delivery while no handle of the
/// consumer was there to hear of it (a rack that crashed, or lost its connection) is
/// dead-lettered by the next handle, from the delivery count.
pub(crate) async fn a_consumer_back_from_away_dead_letters_what_ran_out(
    snake: &Snake,
    stream: &str,
) {
    msg_stream(snake, stream).await;
    snake
        .create_stream(StreamConfig::dead_letters())
        .await
        .expect("dead-letter stream");
    let to = subject("flux.msg.r0.src.out");
    snake
        .stream_publish(Message::new(to.clone(), &b"held"[..]).with_id("h-1"))
        .await
        .expect("publish");
    let cfg = ConsumerConfig::new(to.clone().into())
        .durable("away")
        .expect("durable")
        .ack_wait(Duration::from_millis(300))
        .max_deliver(1)
        .dead_letter(Subject::dead_letter("r1", "sink", "in").expect("dlq"));
    {
        let mut away = snake.consumer(stream, cfg.clone()).await.expect("consumer");
        let held = away.next().await.expect("delivery");
        assert_eq!(held.deliveries, 1);
        // The handle goes with the delivery unanswered.
        drop(held);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut back = snake.consumer(stream, cfg).await.expect("consumer");
    quiet(&mut back, Duration::from_secs(2)).await;
    let letters = snake
        .dead_letters(&Pattern::dead_letters(), 0, 10)
        .await
        .expect("list");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].reason, "max_deliver");
    assert_eq!(letters[0].original().id(), Some("h-1"));
    assert_eq!(snake.dropped(), (0, 0));
}

pub(crate) async fn dedup_within_window(snake: &Snake, stream: &str) {
    let cfg = StreamConfig::new(stream, [Pattern::msg_all()])
        .expect("config")
        .duplicate_window(Duration::from_secs(2));
    snake.create_stream(cfg).await.expect("stream");
    let to = subject("flux.msg.r1.g.in");
    let first = snake
        .stream_publish(Message::new(to.clone(), &b"a"[..]).with_id("42"))
        .await
        .expect("publish");
    let again = snake
        .stream_publish(Message::new(to.clone(), &b"a"[..]).with_id("42"))
        .await
        .expect("publish");
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(again.sequence, first.sequence);
    let other = snake
        .stream_publish(Message::new(to.clone(), &b"b"[..]).with_id("43"))
        .await
        .expect("publish");
    assert!(!other.duplicate);
    // The input, not a wait: time passes beyond the window.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let later = snake
        .stream_publish(Message::new(to, &b"a"[..]).with_id("42"))
        .await
        .expect("publish");
    assert!(!later.duplicate, "outside the window the id is new again");
}

pub(crate) async fn request_reply(snake: &Snake) {
    let ctrl = Subject::ctrl("acceptor").expect("subject");
    let err = snake
        .request(ctrl.clone(), &b"drain"[..], Duration::from_millis(200))
        .await
        .expect_err("nobody listens");
    assert!(matches!(err, Error::NoResponders(_)), "{err}");
    let mut listener = snake
        .subscribe(Pattern::from(ctrl.clone()))
        .await
        .expect("sub");
    // A listener that does not answer: the request times out.
    let err = snake
        .request(ctrl.clone(), &b"drain"[..], Duration::from_millis(200))
        .await
        .expect_err("no answer");
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    let _ = listener.next().await;
    let responder = {
        let snake = snake.clone();
        tokio::spawn(async move {
            let req = listener.next().await.expect("request");
            snake.respond(&req, &b"drained"[..]).await.expect("respond");
        })
    };
    let reply = snake
        .request(ctrl, &b"drain"[..], Duration::from_secs(5))
        .await
        .expect("reply");
    assert_eq!(reply.payload, b"drained"[..]);
    responder.await.expect("responder");
}

pub(crate) async fn kv_compare_and_set_and_watch(snake: &Snake, bucket: &str) {
    let kv = snake
        .kv(KvConfig::new(bucket).expect("config"))
        .await
        .expect("bucket");
    let r1 = kv.create("tickets.a", &b"1"[..]).await.expect("create");
    let err = kv.create("tickets.a", &b"2"[..]).await.expect_err("exists");
    assert!(matches!(err, Error::KeyExists { .. }), "{err}");
    let mut watch = kv.watch("tickets.>").await.expect("watch");
    let first = watch.next().await.expect("current value first");
    assert_eq!((first.key.as_str(), first.revision), ("tickets.a", r1));
    let err = kv
        .update("tickets.a", &b"3"[..], r1 + 100)
        .await
        .expect_err("stale");
    assert!(
        matches!(err, Error::WrongRevision { expected, current, .. } if expected == r1 + 100 && current == r1),
        "{err}"
    );
    let r2 = kv.update("tickets.a", &b"3"[..], r1).await.expect("cas");
    assert!(r2 > r1);
    let e = kv.get("tickets.a").await.expect("get").expect("present");
    assert_eq!((e.value.as_ref(), e.revision), (&b"3"[..], r2));
    let r3 = kv.delete("tickets.a").await.expect("delete");
    assert_eq!(kv.get("tickets.a").await.expect("get"), None);
    kv.put("other.b", &b"x"[..]).await.expect("put");
    let r5 = kv.put("tickets.b", &b"y"[..]).await.expect("put");
    let changes: Vec<(String, u64, KvOperation)> =
        [watch.next().await, watch.next().await, watch.next().await]
            .into_iter()
            .map(|e| {
                let e = e.expect("change");
                (e.key, e.revision, e.operation)
            })
            .collect();
    assert_eq!(
        changes,
        [
            ("tickets.a".to_owned(), r2, KvOperation::Put),
            ("tickets.a".to_owned(), r3, KvOperation::Delete),
            ("tickets.b".to_owned(), r5, KvOperation::Put),
        ]
    );
    // Compare and set after a delete starts from the delete's revision.
    kv.update("tickets.a", &b"4"[..], r3)
        .await
        .expect("cas after delete");
    for bad in ["", ".a", "a..b", "a b", "a*"] {
        assert!(
            matches!(kv.put(bad, &b""[..]).await, Err(Error::InvalidKey(_))),
            "{bad:?}"
        );
    }
}

pub(crate) async fn kv_open_and_delete_if(snake: &Snake, bucket: &str) {
    let err = snake.kv_open(bucket).await.expect_err("not created yet");
    assert!(
        matches!(&err, Error::BucketNotFound(b) if b == bucket),
        "{err}"
    );
    assert_eq!(err.to_string(), format!("bucket `{bucket}` not found"));
    let cfg = KvConfig::new(bucket)
        .expect("config")
        .history(2)
        .max_value_size(4_096)
        .storage(Storage::Memory);
    let owner = snake.kv(cfg.clone()).await.expect("bucket");
    let user = snake.kv_open(bucket).await.expect("opened");
    assert_eq!(user.config(), &cfg, "the configuration it was created with");
    let r1 = owner.put("parked.a", &b"1"[..]).await.expect("put");
    let e = user.get("parked.a").await.expect("get").expect("shared");
    assert_eq!((e.value.as_ref(), e.revision), (&b"1"[..], r1));
    let err = user
        .put("parked.big", vec![0u8; 4_097])
        .await
        .expect_err("the owner's size limit holds");
    assert!(
        matches!(err, Error::ValueTooLarge { max: 4_096, .. }),
        "{err}"
    );
    // Compare and delete: a stale revision leaves the entry; the current one takes it.
    let r2 = owner.put("parked.a", &b"2"[..]).await.expect("put");
    let err = user.delete_if("parked.a", r1).await.expect_err("stale");
    assert!(
        matches!(err, Error::WrongRevision { expected, current, .. } if expected == r1 && current == r2),
        "{err}"
    );
    assert!(owner.get("parked.a").await.expect("get").is_some());
    let r3 = user.delete_if("parked.a", r2).await.expect("current");
    assert!(r3 > r2);
    assert_eq!(owner.get("parked.a").await.expect("get"), None);
    // Of two that read the same revision, the second loses.
    let err = owner
        .delete_if("parked.a", r2)
        .await
        .expect_err("already taken");
    assert!(
        matches!(err, Error::WrongRevision { current, .. } if current == r3),
        "{err}"
    );
    let err = user.delete_if("never.there", 1).await.expect_err("absent");
    assert!(
        matches!(err, Error::WrongRevision { current: 0, .. }),
        "{err}"
    );
    assert!(matches!(
        snake.kv_open("bad name").await,
        Err(Error::InvalidName { .. })
    ));
}

pub(crate) async fn kv_ttl(snake: &Snake, bucket: &str) {
    let cfg = KvConfig::new(bucket)
        .expect("config")
        .ttl(Duration::from_secs(1));
    let kv = snake.kv(cfg).await.expect("bucket");
    kv.put("k", &b"v"[..]).await.expect("put");
    assert!(kv.get("k").await.expect("get").is_some());
    // The input, not a wait: time passes beyond the TTL.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(kv.get("k").await.expect("get"), None, "expired");
    kv.create("k", &b"w"[..])
        .await
        .expect("an expired key can be created again");
}

pub(crate) async fn durable_consumers_resume(snake: &Snake, stream: &str) {
    msg_stream(snake, stream).await;
    let to = subject("flux.msg.r1.g.in");
    for i in 0..4u8 {
        snake
            .stream_publish(Message::new(to.clone(), vec![i]))
            .await
            .expect("publish");
    }
    let cfg = ConsumerConfig::new(to.clone().into())
        .durable("g-in")
        .expect("name");
    let mut c = snake.consumer(stream, cfg.clone()).await.expect("consumer");
    for i in 0..2u8 {
        let d = c.next().await.expect("delivery");
        assert_eq!(d.message.payload, [i][..]);
        d.ack().await.expect("ack");
    }
    drop(c);
    let mut c = snake.consumer(stream, cfg).await.expect("resumed");
    let d = c.next().await.expect("delivery");
    assert_eq!(d.message.payload, [2][..], "resumes after the last ack");
    d.ack().await.expect("ack");
    // A consumer that starts with new messages only.
    let cfg = ConsumerConfig::new(to.clone().into()).deliver(DeliverPolicy::New);
    let mut fresh = snake.consumer(stream, cfg).await.expect("consumer");
    snake
        .stream_publish(Message::new(to, vec![9]))
        .await
        .expect("publish");
    assert_eq!(
        fresh.next().await.expect("delivery").message.payload,
        [9][..]
    );
}

pub(crate) async fn stream_limits(snake: &Snake, stream: &str) {
    let cfg = StreamConfig::new(stream, [Pattern::msg_all()])
        .expect("config")
        .max_bytes(2_500)
        .max_age(Duration::from_secs(2));
    snake.create_stream(cfg).await.expect("stream");
    let to = subject("flux.msg.r1.g.in");
    for i in 0..5u8 {
        snake
            .stream_publish(Message::new(to.clone(), vec![i; 1_000]))
            .await
            .expect("publish");
    }
    // 5,000 payload bytes published, 2,500 kept: the two newest messages. (A server counts
    // subject, headers and its own overhead too, about 50 bytes a message: still two.)
    let mut c = snake
        .consumer(stream, ConsumerConfig::new(to.clone().into()))
        .await
        .expect("consumer");
    for i in 3..5u8 {
        let d = c.next().await.expect("delivery");
        assert_eq!(d.message.payload, [i; 1_000][..]);
        d.ack().await.expect("ack");
    }
    // The input, not a wait: time passes beyond max_age.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut late = snake
        .consumer(stream, ConsumerConfig::new(to.into()))
        .await
        .expect("consumer");
    quiet(&mut late, Duration::from_secs(1)).await;
}

pub(crate) async fn errors_and_state(snake: &Snake) {
    let err = snake
        .stream_publish(Message::new(subject("flux.telemetry.metrics"), &b""[..]))
        .await
        .expect_err("no stream");
    assert!(matches!(err, Error::NoStream(_)), "{err}");
    let err = snake
        .consumer("nope", ConsumerConfig::new(Pattern::msg_all()))
        .await
        .expect_err("no stream");
    assert!(matches!(err, Error::StreamNotFound(_)), "{err}");
    let state = snake.state();
    assert_eq!(state.current(), ConnectionState::Connected);
    snake.close().await;
    assert_eq!(state.current(), ConnectionState::Closed);
    let err = snake
        .publish(Message::new(subject("flux.msg.a.b.c"), &b""[..]))
        .await
        .expect_err("closed");
    assert!(matches!(err, Error::Closed), "{err}");
}

/// Every case of the suite, with the stream or bucket name it uses; `$run` turns the list
/// into tests for one backend.
macro_rules! cases {
    ($run:ident) => {
        $run! {
            wildcards;
            per_subject_order("order");
            ack_means_no_redelivery("ack");
            nak_and_ack_wait_mean_redelivery("nak");
            in_progress_holds_off_redelivery("progress");
            max_deliver_leads_to_dead_letter("dlq");
            dedup_within_window("dedup");
            request_reply;
            kv_compare_and_set_and_watch("cas");
            kv_ttl("ttl");
            kv_open_and_delete_if("opened");
            durable_consumers_resume("durable");
            stream_limits("limits");
            errors_and_state;
            nak_on_the_last_delivery_dead_letters_at_once("last");
            dead_letters_are_kept_listed_and_replayed("replay");
            a_consumer_back_from_away_dead_letters_what_ran_out("away");
            a_durable_created_ahead_keeps_what_came_after("ahead");
            a_queue_group_gets_each_message_once;
            deliveries_come_in_batches_in_order("batches");
            parts_of_a_delivery_are_dead_lettered_each_once("parts");
        }
    };
}

pub(crate) async fn deliveries_come_in_batches_in_order(snake: &Snake, stream: &str) {
    msg_stream(snake, stream).await;
    let to = subject("flux.msg.r1.g.in");
    let mut consumer = snake
        .consumer(stream, ConsumerConfig::new(Pattern::from(to.clone())))
        .await
        .expect("consumer");
    // Nothing there: nothing taken, and nothing waited for.
    let mut batch = Vec::new();
    assert_eq!(consumer.ready(&mut batch, 10).await, 0);
    for i in 0..100u32 {
        snake
            .stream_publish(Message::new(to.clone(), i.to_be_bytes().to_vec()))
            .await
            .expect("publish");
    }
    while batch.len() < 100 {
        let n = consumer
            .next_batch(&mut batch, 16)
            .await
            .expect("deliveries");
        assert!((1..=16).contains(&n), "a batch of {n}");
    }
    let got: Vec<u32> = batch
        .iter()
        .map(|d| u32::from_be_bytes(d.message.payload[..].try_into().expect("4 bytes")))
        .collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    for d in batch {
        d.ack().await.expect("ack");
    }
    quiet(&mut consumer, Duration::from_secs(1)).await;
}

pub(crate) async fn nak_on_the_last_delivery_dead_letters_at_once(snake: &Snake, stream: &str) {
    msg_stream(snake, stream).await;
    let to = subject("flux.msg.r1.g.in");
    let dlq = Subject::dead_letter("r1", "g", "in").expect("dlq");
    let mut letters = snake
        .subscribe(Pattern::from(dlq.clone()))
        .await
        .expect("sub");
    snake
        .stream_publish(Message::new(to.clone(), &b"x"[..]).with_id("last"))
        .await
        .expect("publish");
    let cfg = ConsumerConfig::new(to.into())
        .max_deliver(1)
        .dead_letter(dlq);
    let mut consumer = snake.consumer(stream, cfg).await.expect("consumer");
    let d = consumer.next().await.expect("delivery");
    // A long delay: the dead letter must not wait for it, nor for another `next`.
    d.nak(Duration::from_secs(30)).await.expect("nak");
    let letter = tokio::time::timeout(Duration::from_secs(2), letters.next())
        .await
        .expect("dead letter without waiting")
        .expect("open");
    assert_eq!(letter.headers.get(header::DLQ_MSG_ID), Some("last"));
    assert_eq!(letter.headers.get(header::DLQ_REASON), Some("max_deliver"));
}

mod memory {
    use super::*;

    macro_rules! on_memory {
        ($($name:ident $(($arg:literal))?;)*) => {$(
            #[tokio::test(start_paused = true)]
            async fn $name() {
                super::$name(&Snake::memory() $(, $arg)?).await;
            }
        )*};
    }

    cases!(on_memory);

    #[tokio::test(start_paused = true)]
    async fn dead_letters_without_a_subject_are_counted() {
        let snake = Snake::memory();
        msg_stream(&snake, "counted").await;
        let to = subject("flux.msg.r1.g.in");
        snake
            .stream_publish(Message::new(to.clone(), &b"x"[..]))
            .await
            .expect("publish");
        let cfg = ConsumerConfig::new(to.into()).max_deliver(1);
        let mut c = snake.consumer("counted", cfg).await.expect("consumer");
        c.next()
            .await
            .expect("delivery")
            .nak(Duration::ZERO)
            .await
            .expect("nak");
        quiet(&mut c, Duration::from_secs(1)).await;
        assert_eq!(snake.dropped(), (0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn close_wakes_a_waiting_consumer() {
        let snake = Snake::memory();
        msg_stream(&snake, "closing").await;
        let mut c = snake
            .consumer("closing", ConsumerConfig::new(Pattern::msg_all()))
            .await
            .expect("consumer");
        let closer = {
            let snake = snake.clone();
            tokio::spawn(async move {
                // On paused time this sleep ends only once every other task is idle: the
                // consumer is then waiting in `next`, which is the case under test.
                tokio::time::sleep(Duration::from_millis(100)).await;
                snake.close().await;
            })
        };
        let next = tokio::time::timeout(Duration::from_secs(2), c.next())
            .await
            .expect("woken by close");
        assert!(matches!(next, Err(Error::Closed)), "{next:?}");
        closer.await.expect("closer");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_reach_a_watcher_in_revision_order() {
        let snake = Snake::memory();
        let kv = snake
            .kv(KvConfig::new("busy").expect("config"))
            .await
            .expect("bucket");
        let mut watch = kv.watch(">").await.expect("watch");
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let kv = kv.clone();
                tokio::spawn(async move {
                    for i in 0..500 {
                        kv.put(&format!("w{w}.k{i}"), &b"v"[..]).await.expect("put");
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        let mut last = 0;
        for _ in 0..2_000 {
            let e = tokio::time::timeout(Duration::from_secs(5), watch.next())
                .await
                .expect("a change")
                .expect("open");
            assert!(e.revision > last, "{} after {last}", e.revision);
            last = e.revision;
        }
        assert_eq!(last, 2_000);
        for w in writers {
            w.await.expect("writer");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn slow_subscribers_lose_messages_counted() {
        let snake = Snake::memory();
        let _slow = snake.subscribe(Pattern::msg_all()).await.expect("sub");
        let to = subject("flux.msg.r1.g.in");
        for _ in 0..65_536 + 10 {
            snake
                .publish(Message::new(to.clone(), &b""[..]))
                .await
                .expect("publish");
        }
        assert_eq!(snake.dropped(), (10, 0));
    }
}

/// The same suite against a real nats-server, one per test.
#[cfg(feature = "nats-server-tests")]
mod nats {
    use snake::{NatsOptions, NatsServer};

    use super::*;

    /// A server of its own and a connection to it.
    async fn connect() -> (NatsServer, Snake) {
        let server = NatsServer::start().expect("nats-server");
        let snake = Snake::nats(NatsOptions::new(server.url()))
            .await
            .expect("connect");
        (server, snake)
    }

    macro_rules! conformance {
        ($($name:ident $(($arg:literal))?;)*) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (_server, snake) = connect().await;
                super::$name(&snake $(, $arg)?).await;
            }
        )*};
    }

    cases!(conformance);
}
