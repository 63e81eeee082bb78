//! The daemon's own log in JSON (`[logging] format = "json"`, level debug)
//! through the real binary: SIPp calls through trunkd — one that fails
//! over from a 503 to the next carrier host and is answered, one answered
//! at once, one refused at admission — and every line parsed as JSON.
//!
//! A line *belongs to a call* when a field mentions the call's Call-ID, or
//! it was logged by the call's task (`trunkd::call_task`) or by the engine
//! about the call's INVITE (`call admitted`, `INVITE refused`). Each such
//! line must carry the call's `transaction_id` at the top level (the CDR's
//! `TransactionId`), and an answered call has a handful of them.
//! docs/observability.md describes the format.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::calls::{assert_ok, host, pbx_calls, records, Lab, CARRIER};
use crate::support::*;

/// Lines of a call that are logged outside its span, each with why (none
/// now: the relay task is started inside a span with the call's id).
const OUTSIDE_THE_CALL_SPAN: &[(&str, &str)] = &[];

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Whether any string field of `line` contains `needle`.
fn mentions(line: &Value, needle: &str) -> bool {
    line.as_object().is_some_and(|o| {
        o.values()
            .any(|v| v.as_str().is_some_and(|s| s.contains(needle)))
    })
}

fn is_call_line(line: &Value) -> bool {
    line["target"] == "trunkd::call_task"
        || line["target"] == "trunkd_media::relay"
        || line["message"] == "call admitted"
        || line["message"] == "INVITE refused"
}

#[test]
fn every_line_of_a_call_carries_its_transaction_id() {
    let ports = Ports::pick();
    let (p1, p2) = (free_port_on(CARRIER), free_port_on(CARRIER));
    let mut first = SippBg::uas("uas_reject_503.xml", CARRIER, p1, &["-m", "1"]);
    let mut second = SippBg::uas("uas_answer.xml", CARRIER, p2, &["-m", "2"]);
    let hosts = format!(
        "{}, {}",
        host(CARRIER, p1, ", priority = 1"),
        host(CARRIER, p2, ", priority = 2")
    );
    let lab = Lab {
        hosts: &hosts,
        ..Default::default()
    };
    let text = lab.config(ports).replace(
        "[logging]\nlevel = \"debug\"\n",
        "[logging]\nlevel = \"debug\"\nformat = \"json\"\n",
    );
    assert!(text.contains("format = \"json\""));
    let d = Daemon::start("logs-json", ports, &text);
    let out = pbx_calls("uac_call.xml", &d, &["-d", "100"]);
    assert_ok(&out, "a call that fails over");
    let out = pbx_calls("uac_call.xml", &d, &["-d", "100"]);
    assert_ok(&out, "an answered call");
    assert!(first.wait(Duration::from_secs(10)).0);
    assert!(second.wait(Duration::from_secs(10)).0);
    // A carrier calls a number nobody has: refused (404) at admission.
    let out = sipp_uac(
        "uac_expect_404.xml",
        CARRIER,
        d.sip(),
        &[
            "-s",
            "+12065550777",
            "-key",
            "caller",
            "+14155550123",
            "-m",
            "1",
        ],
    );
    assert_ok(&out, "the refused call");
    let cdrs = wait_cdrs(&records(&d), 2);
    assert_eq!(cdrs.len(), 2);
    let lines = json_lines(&d.log());

    // The answered calls: their CDRs give the transaction id and Call-ID.
    let mut per_txn: HashMap<String, usize> = HashMap::new();
    for cdr in &cdrs {
        let txn = cdr["TransactionId"].as_str().unwrap();
        let call_id = cdr["CallId"].as_str().unwrap();
        for l in lines.iter().filter(|l| mentions(l, call_id)) {
            assert_eq!(l["transaction_id"], txn, "a line naming {call_id}: {l}");
        }
        let n = lines.iter().filter(|l| l["transaction_id"] == txn).count();
        per_txn.insert(txn.to_owned(), n);
        // Admitted, answered, ended (and the failed hop for the first).
        assert!(n >= 3, "only {n} lines carry {txn}");
    }
    // Every line of the call task or about a call's INVITE has an id: one
    // of the answered calls' or the refused call's.
    let refused: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "INVITE refused")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    let refused_txn = refused[0]["transaction_id"].as_str().unwrap().to_owned();
    assert_eq!(refused_txn.len(), 36, "a UUID: {refused_txn}");
    assert_eq!(refused[0]["status"], 404);
    assert!(refused[0]["call_id"]
        .as_str()
        .is_some_and(|c| !c.is_empty()));
    for l in lines.iter().filter(|l| is_call_line(l)) {
        let txn = l["transaction_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no transaction_id: {l}"));
        assert!(
            per_txn.contains_key(txn) || txn == refused_txn,
            "{txn} is no call's: {l}"
        );
    }
    // The failover: the failed hop is logged in the first call's span.
    let hop_failed = lines
        .iter()
        .find(|l| l["message"] == "hop failed")
        .expect("the 503 hop");
    assert_eq!(hop_failed["status"], 503);
    assert!(per_txn.contains_key(hop_failed["transaction_id"].as_str().unwrap()));
    // The relay's own line is one of them (its task runs on a relay thread,
    // in the span it was started in).
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "media relay stopped" && is_call_line(l)),
        "no relay line at debug level"
    );
    // Known lines outside the span: still about the calls, still present
    // (so this list stays true).
    for (message, why) in OUTSIDE_THE_CALL_SPAN {
        assert!(
            lines.iter().any(|l| l["message"] == *message),
            "{message:?} ({why}) no longer logged: take it off the list"
        );
    }
}
