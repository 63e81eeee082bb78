//! No call goes unbilled when trunkd dies (issue 10): answered calls are
//! journalled, and the calls a SIGKILL interrupts get CDRs marked
//! `Interrupted` at the next start, once.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::calls::{host, records, Lab, CARRIER, PBX};
use crate::support::*;

const CALLS: usize = 10;

fn journal_entries(d: &Daemon) -> Vec<std::path::PathBuf> {
    let dir = d.dir.join("var/spool/journal");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|e| e == "json"));
    v.sort();
    v
}

/// Every CDR file under the records directory, by key, with its bytes.
fn cdr_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains("-CDRs/") {
                let key = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(key, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn calls_a_sigkill_interrupts_get_one_interrupted_cdr_each_at_the_next_start() {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let calls = CALLS.to_string();
    let uas = SippBg::uas("uas_answer.xml", CARRIER, carrier, &["-m", &calls]);
    let lab = Lab {
        hosts: &host(CARRIER, carrier, ""),
        ..Default::default()
    };
    let mut d = Daemon::start("journal", ports, &lab.config(ports));
    let target = d.sip().to_string();
    let pbx_port = free_port_on(PBX);
    // Ten calls, answered and held for a minute: they are up when trunkd dies.
    let pbx = SippBg::uas(
        "uac_call.xml",
        PBX,
        pbx_port,
        &[
            "-s",
            "+12065550199",
            "-key",
            "caller",
            "+12065550100",
            "-m",
            &calls,
            "-r",
            "20",
            "-d",
            "60000",
            &target,
        ],
    );
    d.wait_metric("call_journal_total{result=\"written\"}", CALLS as f64);
    let answered_by = SystemTime::now();
    assert_eq!(journal_entries(&d).len(), CALLS);
    assert!(cdr_files(&records(&d)).is_empty());
    // Past one heartbeat after the last answer, so the journal knows the
    // calls were still up then.
    std::thread::sleep(Duration::from_millis(5_500));
    let killed_at = SystemTime::now();
    d.kill();
    drop(pbx);
    let saved: Vec<(std::path::PathBuf, Vec<u8>)> = journal_entries(&d)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    assert_eq!(saved.len(), CALLS, "the journal survives the SIGKILL");

    d.restart();
    let first = cdr_files(&records(&d));
    assert_eq!(first.len(), CALLS, "{:?}\n{}", first.keys(), d.log());
    let mut txns = std::collections::HashSet::new();
    for (key, body) in &first {
        let c: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(c["Status"], "Interrupted", "{c}");
        assert_eq!(c["StatusMessage"], "trunkd stopped during the call");
        assert_eq!(c["VoiceConnectorId"], "vc-east");
        assert_eq!(c["Direction"], "Outbound");
        assert_eq!(c["SourcePhoneNumber"], "+12065550100");
        assert_eq!(c["DestinationPhoneNumber"], "+12065550199");
        let txn = c["TransactionId"].as_str().unwrap().to_owned();
        assert!(key.ends_with(&txn), "{key}");
        assert!(txns.insert(txn), "one CDR per call");
        // The end is the last heartbeat: at most one heartbeat interval
        // (5 s) before the kill, and never after it.
        let start = c["StartTimeEpochSeconds"].as_u64().unwrap();
        let end = c["EndTimeEpochSeconds"].as_u64().unwrap();
        assert!(start <= epoch(answered_by), "{c}");
        assert!(end <= epoch(killed_at), "{c}");
        assert!(end + 6 >= epoch(killed_at), "{c}");
        let billed = c["BillableDurationSeconds"].as_u64().unwrap();
        assert!((5..=12).contains(&billed), "{c}");
    }
    assert!(journal_entries(&d).is_empty());
    d.wait_metric("call_journal_total{result=\"recovered\"}", CALLS as f64);

    // Killed again (the entries' removal lost, say): no CDR is written
    // twice or changed.
    for (path, body) in &saved {
        std::fs::write(path, body).unwrap();
    }
    d.kill();
    d.restart();
    assert_eq!(cdr_files(&records(&d)), first, "no duplicate, no change");
    assert!(journal_entries(&d).is_empty());
    assert_eq!(d.metric("call_journal_total{result=\"recovered\"}"), None);
    d.kill();
    d.restart();
    assert_eq!(cdr_files(&records(&d)), first);

    // A call that ends normally is journalled while it is up, and leaves
    // no entry behind.
    drop(uas);
    let mut uas = SippBg::uas("uas_answer.xml", CARRIER, carrier, &["-m", "1"]);
    let out = crate::calls::pbx_calls("uac_call.xml", &d, &["-d", "300"]);
    crate::calls::assert_ok(&out, "a call after the recovery");
    let (ok, text) = uas.wait(Duration::from_secs(10));
    assert!(ok, "carrier: {text}");
    assert_eq!(wait_cdrs(&records(&d), CALLS + 1).len(), CALLS + 1);
    d.wait_metric("call_journal_total{result=\"written\"}", 1.0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !journal_entries(&d).is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(journal_entries(&d).is_empty());
}
