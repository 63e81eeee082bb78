use proptest::prelude::*;

use super::*;

fn cfg() -> OutboxConfig {
    OutboxConfig {
        max_queued: 100,
        max_age: Duration::from_secs(60),
        backoff: Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        },
        max_in_flight: 8,
    }
}

fn t(s: &str) -> TargetId {
    s.parse().unwrap()
}

fn ev(id: &str, key: &str, created_ms: u64) -> Arc<QueuedEvent> {
    Arc::new(QueuedEvent {
        id: id.into(),
        ordering_key: key.into(),
        created_ms,
        body: Arc::from(format!("{{\"id\":\"{id}\"}}")),
    })
}

fn enqueue(o: &mut Outbox, now: u64, target: &str, id: &str, key: &str) {
    o.handle(
        now,
        Input::Enqueue {
            target: t(target),
            event: ev(id, key, now),
        },
    );
}

fn attempted(o: &mut Outbox, now: u64, seq: u64, result: AttemptResult) {
    o.handle(
        now,
        Input::Attempted {
            seq,
            result,
            random: 1.0,
        },
    );
}

fn outputs(o: &mut Outbox) -> Vec<Output> {
    std::iter::from_fn(|| o.poll_output()).collect()
}

/// (event id, attempt) of every transmit due at `now`.
fn sends(o: &mut Outbox, now: u64) -> Vec<(String, u32)> {
    std::iter::from_fn(|| o.poll_transmit(now))
        .map(|x| (x.event.id.clone(), x.attempt))
        .collect()
}

#[test]
fn each_new_pair_is_journalled_before_it_is_sent() {
    let mut o = Outbox::new(cfg());
    enqueue(&mut o, 0, "ops", "e1", "daemon");
    assert_eq!(
        outputs(&mut o),
        [Output::Persist {
            seq: 1,
            target: t("ops"),
            event: ev("e1", "daemon", 0)
        }]
    );
    assert_eq!(sends(&mut o, 0), [("e1".into(), 1)]);
    attempted(&mut o, 5, 1, AttemptResult::Delivered);
    assert_eq!(
        outputs(&mut o),
        [Output::Remove {
            seq: 1,
            target: t("ops"),
            finished: Finished::Delivered
        }]
    );
    assert_eq!(o.queued(&t("ops")), 0);
    assert_eq!(o.poll_timeout(), None);
}

#[test]
fn one_call_s_events_go_one_at_a_time_and_other_calls_in_parallel() {
    let mut o = Outbox::new(cfg());
    enqueue(&mut o, 0, "ops", "a1", "call-a");
    enqueue(&mut o, 0, "ops", "a2", "call-a");
    enqueue(&mut o, 0, "ops", "b1", "call-b");
    assert_eq!(sends(&mut o, 0), [("a1".into(), 1), ("b1".into(), 1)]);
    // a2 waits for a1, however long it takes.
    assert_eq!(sends(&mut o, 50_000), []);
    attempted(&mut o, 100, 1, AttemptResult::Delivered);
    assert_eq!(sends(&mut o, 100), [("a2".into(), 1)]);
}

#[test]
fn each_target_has_its_own_queue() {
    let mut o = Outbox::new(cfg());
    enqueue(&mut o, 0, "ops", "e1", "daemon");
    enqueue(&mut o, 0, "file", "e1", "daemon");
    let x: Vec<_> = std::iter::from_fn(|| o.poll_transmit(0))
        .map(|x| (x.target.to_string(), x.seq))
        .collect();
    assert_eq!(x, [("file".to_owned(), 2), ("ops".to_owned(), 1)]);
}

#[test]
fn a_failure_that_may_pass_is_retried_after_the_backoff_delay() {
    let mut o = Outbox::new(cfg());
    enqueue(&mut o, 0, "ops", "e1", "daemon");
    outputs(&mut o);
    assert_eq!(sends(&mut o, 0), [("e1".into(), 1)]);
    // random 1.0: the ceiling, 1 s for the first retry.
    attempted(&mut o, 200, 1, AttemptResult::Status(503));
    assert_eq!(
        outputs(&mut o),
        [Output::Retrying {
            seq: 1,
            target: t("ops"),
            attempt: 1,
            at_ms: 1200
        }]
    );
    assert_eq!(o.poll_timeout(), Some(1200));
    assert_eq!(sends(&mut o, 1199), []);
    assert_eq!(sends(&mut o, 1200), [("e1".into(), 2)]);
    attempted(&mut o, 1300, 1, AttemptResult::Transient);
    // Second retry: ceiling 2 s.
    assert_eq!(o.poll_timeout(), Some(3300));
    assert_eq!(sends(&mut o, 3300), [("e1".into(), 3)]);
}

#[test]
fn only_408_and_429_of_the_4xx_are_retried() {
    for (status, retried) in [
        (400, false),
        (401, false),
        (404, false),
        (408, true),
        (410, false),
        (429, true),
        (499, false),
        (500, true),
        (503, true),
        (302, true),
    ] {
        let r = AttemptResult::Status(status);
        assert_eq!(r.is_retryable(), retried, "{status}");
        let mut o = Outbox::new(cfg());
        enqueue(&mut o, 0, "ops", "e1", "daemon");
        outputs(&mut o);
        sends(&mut o, 0);
        attempted(&mut o, 10, 1, r);
        let out = outputs(&mut o);
        if retried {
            assert!(matches!(out[..], [Output::Retrying { .. }]), "{status}");
        } else {
            assert_eq!(
                out,
                [Output::Remove {
                    seq: 1,
                    target: t("ops"),
                    finished: Finished::Rejected
                }],
                "{status}"
            );
        }
    }
    assert!(AttemptResult::Transient.is_retryable());
}

#[test]
fn a_rejected_head_lets_the_next_event_of_its_call_go() {
    let mut o = Outbox::new(cfg());
    enqueue(&mut o, 0, "ops", "a1", "call-a");
    enqueue(&mut o, 0, "ops", "a2", "call-a");
    sends(&mut o, 0);
    attempted(&mut o, 10, 1, AttemptResult::Status(400));
    assert_eq!(sends(&mut o, 10), [("a2".into(), 1)]);
}

#[test]
fn an_event_past_its_maximum_age_is_dropped_and_the_next_one_goes() {
    let mut o = Outbox::new(cfg());
    enqueue(&mut o, 0, "ops", "a1", "call-a");
    enqueue(&mut o, 30_000, "ops", "a2", "call-a");
    outputs(&mut o);
    sends(&mut o, 30_000);
    attempted(&mut o, 30_100, 1, AttemptResult::Status(500));
    outputs(&mut o);
    // The retry is due at 31.1 s; it fails again after a1 is 60 s old.
    assert_eq!(o.poll_timeout(), Some(31_100));
    assert_eq!(sends(&mut o, 31_100), [("a1".into(), 2)]);
    attempted(&mut o, 60_001, 1, AttemptResult::Transient);
    assert_eq!(
        outputs(&mut o),
        [Output::Remove {
            seq: 1,
            target: t("ops"),
            finished: Finished::DroppedMaxAge
        }]
    );
    assert_eq!(sends(&mut o, 60_001), [("a2".into(), 1)]);
}

#[test]
fn a_waiting_event_expires_on_time_without_an_attempt() {
    // A retry far off: the age limit wakes the daemon at 60.001 s.
    let mut c = cfg();
    c.backoff.initial = Duration::from_secs(1000);
    c.backoff.max = Duration::from_secs(1000);
    let mut o2 = Outbox::new(c);
    enqueue(&mut o2, 0, "ops", "a1", "k");
    outputs(&mut o2);
    sends(&mut o2, 0);
    attempted(&mut o2, 1, 1, AttemptResult::Status(500));
    outputs(&mut o2);
    assert_eq!(o2.poll_timeout(), Some(60_001));
    assert_eq!(sends(&mut o2, 60_001), []);
    assert_eq!(
        outputs(&mut o2),
        [Output::Remove {
            seq: 1,
            target: t("ops"),
            finished: Finished::DroppedMaxAge
        }]
    );
}

#[test]
fn a_delivery_that_succeeds_after_the_maximum_age_still_counts_as_delivered() {
    let mut o = Outbox::new(cfg());
    enqueue(&mut o, 0, "ops", "a1", "k");
    outputs(&mut o);
    sends(&mut o, 0);
    attempted(&mut o, 70_000, 1, AttemptResult::Delivered);
    assert_eq!(
        outputs(&mut o),
        [Output::Remove {
            seq: 1,
            target: t("ops"),
            finished: Finished::Delivered
        }]
    );
}

#[test]
fn a_full_queue_drops_the_new_event_not_the_old_ones() {
    let mut c = cfg();
    c.max_queued = 2;
    let mut o = Outbox::new(c);
    enqueue(&mut o, 0, "ops", "e1", "daemon");
    enqueue(&mut o, 0, "ops", "e2", "daemon");
    enqueue(&mut o, 0, "ops", "e3", "daemon");
    enqueue(&mut o, 0, "file", "e3", "daemon");
    let out = outputs(&mut o);
    assert_eq!(out.len(), 4);
    assert_eq!(
        out[2],
        Output::DroppedQueueFull {
            target: t("ops"),
            event_id: "e3".into()
        }
    );
    assert!(matches!(&out[3], Output::Persist { seq: 3, target, .. } if target == &t("file")));
    assert_eq!((o.queued(&t("ops")), o.queued(&t("file"))), (2, 1));
}

#[test]
fn restored_events_keep_their_order_and_new_ones_come_after() {
    let mut o = Outbox::new(cfg());
    for seq in [7, 3, 5] {
        o.handle(
            1000,
            Input::Restore {
                seq,
                target: t("ops"),
                event: ev(&format!("r{seq}"), "daemon", 500),
            },
        );
    }
    assert_eq!(outputs(&mut o), []);
    enqueue(&mut o, 1000, "ops", "new", "daemon");
    assert!(matches!(
        outputs(&mut o)[..],
        [Output::Persist { seq: 8, .. }]
    ));
    let order: Vec<String> = (0..4)
        .map(|i| {
            let x = o.poll_transmit(1000 + i).unwrap();
            let id = x.event.id.clone();
            attempted(&mut o, 1000 + i, x.seq, AttemptResult::Delivered);
            id
        })
        .collect();
    assert_eq!(order, ["r3", "r5", "r7", "new"]);
}

#[test]
fn at_most_max_in_flight_attempts_per_target() {
    let mut c = cfg();
    c.max_in_flight = 2;
    let mut o = Outbox::new(c);
    for i in 0..4 {
        enqueue(&mut o, 0, "ops", &format!("e{i}"), &format!("k{i}"));
    }
    assert_eq!(sends(&mut o, 0), [("e0".into(), 1), ("e1".into(), 1)]);
    attempted(&mut o, 1, 2, AttemptResult::Delivered);
    assert_eq!(sends(&mut o, 1), [("e2".into(), 1)]);
}

#[test]
fn an_unknown_or_repeated_attempt_report_changes_nothing() {
    let mut o = Outbox::new(cfg());
    enqueue(&mut o, 0, "ops", "e1", "k");
    outputs(&mut o);
    attempted(&mut o, 1, 1, AttemptResult::Delivered); // not in flight
    attempted(&mut o, 1, 99, AttemptResult::Delivered); // unknown
    assert_eq!(outputs(&mut o), []);
    assert_eq!(o.queued(&t("ops")), 1);
}

#[derive(Clone, Debug)]
enum Op {
    Emit { target: u8, key: u8 },
    Send,
    Finish { pick: usize, result: u8 },
    Wait { ms: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..2, 0u8..3).prop_map(|(target, key)| Op::Emit { target, key }),
        Just(Op::Send),
        (0usize..16, 0u8..4).prop_map(|(pick, result)| Op::Finish { pick, result }),
        (0u32..40_000).prop_map(|ms| Op::Wait { ms }),
    ]
}

proptest! {
    /// Whatever happens: at most one attempt in flight per (target, key);
    /// each (target, key) sees its events' first attempts and deliveries
    /// in emission order; a queue never holds more than `max_queued`;
    /// every journalled pair is removed exactly once or is still queued.
    #[test]
    fn order_bounds_and_bookkeeping_hold(ops in proptest::collection::vec(op(), 1..200)) {
        let mut c = cfg();
        c.max_queued = 6;
        let mut o = Outbox::new(c);
        let mut now = 0u64;
        let mut n = 0u32;
        let mut in_flight: Vec<Transmit> = Vec::new();
        let mut persisted: HashMap<u64, (TargetId, String, u32)> = HashMap::new();
        let mut removed: HashSet<u64> = HashSet::new();
        let mut delivered: HashMap<(TargetId, String), Vec<u32>> = HashMap::new();
        let mut started: HashMap<(TargetId, String), Vec<u32>> = HashMap::new();
        for op in ops {
            match op {
                Op::Emit { target, key } => {
                    n += 1;
                    let key = format!("k{key}");
                    o.handle(now, Input::Enqueue {
                        target: t(if target == 0 { "a" } else { "b" }),
                        event: ev(&n.to_string(), &key, now),
                    });
                }
                Op::Send => {
                    while let Some(x) = o.poll_transmit(now) {
                        prop_assert!(!in_flight.iter().any(|f| f.target == x.target
                            && f.event.ordering_key == x.event.ordering_key));
                        let tk = (x.target.clone(), x.event.ordering_key.clone());
                        let id: u32 = x.event.id.parse().unwrap();
                        if x.attempt == 1 {
                            started.entry(tk).or_default().push(id);
                        }
                        in_flight.push(x);
                    }
                }
                Op::Finish { pick, result } => {
                    if !in_flight.is_empty() {
                        let x = in_flight.remove(pick % in_flight.len());
                        let result = match result {
                            0 => AttemptResult::Delivered,
                            1 => AttemptResult::Status(500),
                            2 => AttemptResult::Status(404),
                            _ => AttemptResult::Transient,
                        };
                        if result == AttemptResult::Delivered {
                            let id: u32 = x.event.id.parse().unwrap();
                            delivered.entry((x.target.clone(), x.event.ordering_key.clone())).or_default().push(id);
                        }
                        o.handle(now, Input::Attempted { seq: x.seq, result, random: 0.5 });
                    }
                }
                Op::Wait { ms } => now += u64::from(ms),
            }
            while let Some(out) = o.poll_output() {
                match out {
                    Output::Persist { seq, target, event } => {
                        prop_assert!(persisted.insert(seq, (target, event.ordering_key.clone(), event.id.parse().unwrap())).is_none());
                    }
                    Output::Remove { seq, .. } => {
                        prop_assert!(persisted.contains_key(&seq));
                        prop_assert!(removed.insert(seq), "removed twice");
                    }
                    Output::DroppedQueueFull { target, .. } => prop_assert_eq!(o.queued(&target), 6),
                    Output::Retrying { at_ms, .. } => prop_assert!(at_ms > now),
                }
            }
            for target in [t("a"), t("b")] {
                prop_assert!(o.queued(&target) <= 6);
            }
        }
        for ids in delivered.values().chain(started.values()) {
            prop_assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order: {:?}", ids);
        }
        let pending: usize = [t("a"), t("b")].iter().map(|x| o.queued(x)).sum();
        prop_assert_eq!(persisted.len(), removed.len() + pending);
    }
}
