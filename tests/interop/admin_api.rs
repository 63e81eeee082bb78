//! The admin API (SPEC §11) through the real binary: bearer tokens and
//! roles, the audit log, the number lifecycle with SIPp calls, writes that
//! keep the operator's comments, the 409 on a hand edit, and an OpenAPI
//! fuzzer (schemathesis) against the running daemon.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::calls::{assert_ok, host, Lab, CARRIER, ROUTES};
use crate::support::*;

const READ: &str = "t-read";
const OPERATOR: &str = "t-op";
const ADMIN: &str = "t-admin";

/// `[admin]` with three tokens (the SHA-256 of `t-read`, `t-op` and
/// `t-admin`) and the audit log under `var/`.
fn with_tokens(text: &str) -> String {
    text.replacen(
        "[admin]\n",
        r#"[admin]
# Tokens are stored as their SHA-256 (sha256sum).
tokens = [
  { name = "grafana", role = "read-only", token_sha256 = "37b8d57153bffdf023160736edb4fcb922a1b6b6ce2dba953f4b571880757b47" },
  { name = "noc", role = "operator", token_sha256 = "244bc085e17ab36e3391bfdbc97dde50e55d0bd45de41a7f9213f2e8fe0d2045" },
  { name = "root", role = "admin", token_sha256 = "c140b9ee332d67f84953aae63edc037a10d217685d2d98161ecb34696eb4e2a4" },
]
audit_log = "var/audit.jsonl"
"#,
        1,
    )
}

/// One HTTP/1.1 exchange with an optional bearer token and JSON body:
/// (status, headers, body).
fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("admin listener");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn audit_lines(d: &Daemon) -> Vec<serde_json::Value> {
    std::fs::read_to_string(d.dir.join("var/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(json)
        .collect()
}

/// A carrier call to `number` through trunkd; the customer's route (a
/// SIPp UAS on `route`) answers when the number routes there.
fn carrier_calls(d: &Daemon, number: &str, scenario: &str) -> std::process::Output {
    sipp_uac(
        scenario,
        CARRIER,
        d.sip(),
        &[
            "-s",
            number,
            "-key",
            "caller",
            "+14155550123",
            "-m",
            "1",
            "-d",
            "100",
        ],
    )
}

#[test]
fn tokens_roles_and_the_audit_log() {
    let ports = Ports::pick();
    let lab = Lab {
        hosts: &host(CARRIER, 9, ""),
        ..Default::default()
    };
    let d = Daemon::start("api-auth", ports, &with_tokens(&lab.config(ports)));
    let admin = d.admin();
    let file = d.dir.join("trunkd.toml");
    let before = std::fs::read_to_string(&file).unwrap();

    // Metrics stay open for Prometheus; everything else wants a token.
    assert_eq!(api(admin, "GET", "/metrics", None, "").0, 200);
    let (status, head, body) = api(admin, "GET", "/voice-connectors", None, "");
    assert_eq!(status, 401, "{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    assert_eq!(json(&body)["Code"], "Unauthorized");
    assert_eq!(
        api(admin, "GET", "/voice-connectors", Some("t-wrong"), "").0,
        401
    );

    let (status, _, body) = api(admin, "GET", "/voice-connectors", Some(READ), "");
    assert_eq!(status, 200);
    let ids: Vec<_> = json(&body)["VoiceConnectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["VoiceConnectorId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["vc-east", "vc-west"]);

    // A read-only token can change nothing, and nothing it tried is in
    // the file; every attempt is in the audit log.
    for (method, path, body) in [
        ("DELETE", "/phone-numbers/+12065550101", ""),
        (
            "POST",
            "/phone-numbers/+12065550100",
            r#"{"CallingName":"Hacked"}"#,
        ),
        ("DELETE", "/voice-connectors/vc-west", ""),
        ("POST", "/reload", ""),
    ] {
        let (status, _, text) = api(admin, method, path, Some(READ), body);
        assert_eq!(status, 403, "{method} {path}: {text}");
        assert!(json(&text)["Message"]
            .as_str()
            .unwrap()
            .contains("read-only"));
    }
    // An operator may not delete a voice connector (admin only).
    assert_eq!(
        api(
            admin,
            "DELETE",
            "/voice-connectors/vc-west",
            Some(OPERATOR),
            ""
        )
        .0,
        403
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        before,
        "the file is untouched"
    );

    // An operator renames a number: the file changes in that one line.
    let (status, _, body) = api(
        admin,
        "POST",
        "/phone-numbers/+12065550100",
        Some(OPERATOR),
        r#"{"CallingName":"North Desk"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["PhoneNumber"]["CallingName"], "North Desk");
    let after = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        after,
        before.replacen(
            "calling_name = \"East Office\"",
            "calling_name = \"North Desk\"",
            1
        )
    );
    assert!(
        after.contains("# Tokens are stored as their SHA-256"),
        "comments kept"
    );

    let lines = audit_lines(&d);
    let seen: Vec<(String, String, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["token"].as_str().unwrap_or_default().to_owned(),
                l["action"].as_str().unwrap_or_default().to_owned(),
                l["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("grafana".to_owned(), "DeletePhoneNumber".to_owned(), 403),
            ("grafana".to_owned(), "UpdatePhoneNumber".to_owned(), 403),
            ("grafana".to_owned(), "DeleteVoiceConnector".to_owned(), 403),
            ("grafana".to_owned(), "Reload".to_owned(), 403),
            ("noc".to_owned(), "DeleteVoiceConnector".to_owned(), 403),
            ("noc".to_owned(), "UpdatePhoneNumber".to_owned(), 200),
        ]
    );
    let last = lines.last().unwrap();
    assert_eq!(
        last["parameters"],
        serde_json::json!({"CallingName": "North Desk"})
    );
    assert!(last["source"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(last["result"], "ok");
}

#[test]
fn a_deleted_number_stops_receiving_calls_until_it_is_restored() {
    let ports = Ports::pick();
    let route = free_port_on(ROUTES);
    let east_routes = host(ROUTES, route, "");
    let lab = Lab {
        hosts: &host(CARRIER, 9, ""),
        east_routes: &east_routes,
        ..Default::default()
    };
    let d = Daemon::start("api-numbers", ports, &with_tokens(&lab.config(ports)));
    let admin = d.admin();
    let n = "+12065550100";

    // Assigned: the call reaches the VC's route.
    let mut uas = SippBg::uas("uas_answer.xml", ROUTES, route, &["-m", "1"]);
    assert_ok(&carrier_calls(&d, n, "uac_call.xml"), "assigned number");
    assert!(uas.wait(Duration::from_secs(10)).0);

    // Deleting an assigned number is refused: disassociate first.
    let (status, _, body) = api(
        admin,
        "DELETE",
        &format!("/phone-numbers/{n}"),
        Some(OPERATOR),
        "",
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(json(&body)["Code"], "PhoneNumberAssociationsExist");
    let (status, _, body) = api(
        admin,
        "POST",
        "/voice-connectors/vc-east?operation=disassociate-phone-numbers",
        Some(OPERATOR),
        &format!(r#"{{"E164PhoneNumbers":["{n}"]}}"#),
    );
    assert_eq!(
        (status, json(&body)["PhoneNumberErrors"].clone()),
        (200, serde_json::json!([]))
    );
    let (status, _, body) = api(
        admin,
        "DELETE",
        &format!("/phone-numbers/{n}"),
        Some(OPERATOR),
        "",
    );
    assert_eq!(status, 204, "{body}");
    let (_, _, body) = api(admin, "GET", &format!("/phone-numbers/{n}"), Some(READ), "");
    let number = &json(&body)["PhoneNumber"];
    assert_eq!(number["Status"], "DeleteInProgress");
    assert!(number["DeletionTimestamp"].is_string());
    let (_, _, body) = api(
        admin,
        "GET",
        "/phone-numbers?status=DeleteInProgress",
        Some(READ),
        "",
    );
    assert_eq!(json(&body)["PhoneNumbers"].as_array().unwrap().len(), 1);
    let file = std::fs::read_to_string(d.dir.join("trunkd.toml")).unwrap();
    assert!(file.contains("deleted_at = \""), "the queue is in the file");

    // A number in the deletion queue gets no calls.
    assert_ok(
        &carrier_calls(&d, n, "uac_expect_404.xml"),
        "deleted number: 404",
    );
    // Nor can it be associated until it is restored.
    let (_, _, body) = api(
        admin,
        "POST",
        "/voice-connectors/vc-east?operation=associate-phone-numbers",
        Some(OPERATOR),
        &format!(r#"{{"E164PhoneNumbers":["{n}"]}}"#),
    );
    assert_eq!(
        json(&body)["PhoneNumberErrors"][0]["ErrorCode"],
        "BadRequest"
    );

    // Restored and associated again: calls reach the route again.
    let (status, _, body) = api(
        admin,
        "POST",
        &format!("/phone-numbers/{n}?operation=restore"),
        Some(OPERATOR),
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["PhoneNumber"]["Status"], "Unassigned");
    let (status, _, body) = api(
        admin,
        "POST",
        "/voice-connectors/vc-east?operation=associate-phone-numbers",
        Some(OPERATOR),
        &format!(r#"{{"E164PhoneNumbers":["{n}"]}}"#),
    );
    assert_eq!(
        (status, json(&body)["PhoneNumberErrors"].clone()),
        (200, serde_json::json!([]))
    );
    let mut uas = SippBg::uas("uas_answer.xml", ROUTES, route, &["-m", "1"]);
    assert_ok(&carrier_calls(&d, n, "uac_call.xml"), "restored number");
    assert!(uas.wait(Duration::from_secs(10)).0);

    // Every write is in the audit log, by the operator's token.
    let actions: Vec<String> = audit_lines(&d)
        .iter()
        .filter(|l| {
            l["status"]
                .as_u64()
                .is_some_and(|s| (200..300).contains(&s))
        })
        .map(|l| {
            format!(
                "{} {}",
                l["token"].as_str().unwrap(),
                l["action"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            "noc DisassociatePhoneNumbersFromVoiceConnector",
            "noc DeletePhoneNumber",
            "noc AssociatePhoneNumbersWithVoiceConnector",
            "noc RestorePhoneNumber",
            "noc AssociatePhoneNumbersWithVoiceConnector",
        ]
    );
}

#[test]
fn a_hand_edit_since_the_last_load_is_never_overwritten() {
    let ports = Ports::pick();
    let lab = Lab {
        hosts: &host(CARRIER, 9, ""),
        ..Default::default()
    };
    let d = Daemon::start("api-409", ports, &with_tokens(&lab.config(ports)));
    let admin = d.admin();
    let file = d.dir.join("trunkd.toml");
    // Read, then someone edits the file by hand, then the write.
    let (status, _, _) = api(admin, "GET", "/phone-numbers/+12065550101", Some(READ), "");
    assert_eq!(status, 200);
    let edited = std::fs::read_to_string(&file).unwrap() + "\n# edited by hand\n";
    std::fs::write(&file, &edited).unwrap();
    let (status, _, body) = api(
        admin,
        "POST",
        "/phone-numbers/+12065550101",
        Some(ADMIN),
        r#"{"Name":"Lobby"}"#,
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(json(&body)["Code"], "Conflict");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        edited,
        "nothing lost"
    );
    // After a reload the write goes through and keeps the hand edit.
    assert_eq!(api(admin, "POST", "/reload", Some(OPERATOR), "").0, 200);
    let (status, _, body) = api(
        admin,
        "POST",
        "/phone-numbers/+12065550101",
        Some(ADMIN),
        r#"{"Name":"Lobby"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let now = std::fs::read_to_string(&file).unwrap();
    assert!(
        now.contains("# edited by hand") && now.contains("name = \"Lobby\""),
        "{now}"
    );

    // A change that would make the file invalid is refused with the
    // validation errors, and the file stays.
    let (status, _, body) = api(
        admin,
        "POST",
        "/phone-numbers/+12065550101",
        Some(ADMIN),
        r#"{"CallingName":"x"}"#,
    );
    assert_eq!(status, 422, "{body}");
    let errors = json(&body)["Errors"].to_string();
    assert!(
        errors.contains("numbers[e164_phone_number=+12065550101].calling_name"),
        "{errors}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), now);

    // Deletion rules: a VC with numbers, an enabled rule.
    let (status, _, body) = api(
        admin,
        "DELETE",
        "/voice-connectors/vc-east",
        Some(ADMIN),
        "",
    );
    assert_eq!(
        (status, json(&body)["Code"].clone()),
        (409, "PhoneNumberAssociationsExist".into())
    );
    let (status, _, body) = api(
        admin,
        "DELETE",
        "/voice-connectors/vc-west",
        Some(ADMIN),
        "",
    );
    assert_eq!(
        (status, json(&body)["Code"].clone()),
        (409, "VoiceConnectorGroupAssociationsExist".into())
    );
    let (status, _, _) = api(
        admin,
        "DELETE",
        "/voice-connectors/vc-nope",
        Some(ADMIN),
        "",
    );
    assert_eq!(status, 404);
}

/// schemathesis (PyPI, in `.venv-test/`) fuzzes every operation of
/// `docs/openapi.json` against the running daemon with the admin token: no
/// 5xx, every response conforms to the document, and the file is still
/// valid afterwards.
#[test]
fn the_openapi_document_holds_under_a_fuzzer() {
    let bin = std::env::var_os("TRUNKD_TEST_SCHEMATHESIS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv-test/bin/schemathesis"));
    assert!(
        bin.exists(),
        "schemathesis is not installed: run scripts/test (it pip-installs it into .venv-test/)"
    );
    let ports = Ports::pick();
    let lab = Lab {
        hosts: &host(CARRIER, 9, ""),
        ..Default::default()
    };
    let d = Daemon::start("api-fuzz", ports, &with_tokens(&lab.config(ports)));
    let out = std::process::Command::new(&bin)
        .args([
            "run",
            repo().join("docs/openapi.json").to_str().unwrap(),
            "--url",
            &format!("http://{}", d.admin()),
            "--header",
            &format!("Authorization: Bearer {ADMIN}"),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--request-timeout",
            "10",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        // Its cache and reports go to the test's own directory.
        .current_dir(&d.dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("schemathesis runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    assert!(
        text.contains("Tested: 58"),
        "every operation was tried:\n{text}"
    );
    // The daemon is alive and the file it may have changed still loads.
    assert_eq!(
        http(d.admin(), "GET", "/healthz").map(|r| r.0).ok(),
        Some(200)
    );
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_trunkd"))
        .args(["check-config", "--config"])
        .arg(d.dir.join("trunkd.toml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "the file is invalid after the run:\n{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

/// `trunkd numbers`, `trunkd calls`, `trunkd routes` and `trunkd reload`
/// go through the API with the operator's token from the environment.
#[test]
fn the_cli_uses_the_api_with_the_token_from_the_environment() {
    let ports = Ports::pick();
    let lab = Lab {
        hosts: &host(CARRIER, 9, ""),
        ..Default::default()
    };
    let d = Daemon::start("api-cli", ports, &with_tokens(&lab.config(ports)));
    let file = d.dir.join("trunkd.toml");
    let cli = |token: Option<&str>, args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_trunkd"));
        c.args(args).arg("--config").arg(&file);
        c.env_remove("TRUNKD_ADMIN_TOKEN")
            .env_remove("TRUNKD_ADMIN_TOKEN_FILE");
        if let Some(t) = token {
            c.env("TRUNKD_ADMIN_TOKEN", t);
        }
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = cli(Some(READ), &["numbers", "list"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NUMBER"), "{out}");
    assert!(
        lines.iter().any(|l| l.starts_with("+12065550100")
            && l.contains("Assigned")
            && l.contains("VoiceConnectorId vc-east")
            && l.contains("East Office")),
        "{out}"
    );
    let (ok, _, err) = cli(Some(READ), &["numbers", "delete", "+12065550101"]);
    assert!(!ok);
    assert!(
        err.contains("HTTP 403") && err.contains("read-only"),
        "{err}"
    );
    let (ok, _, err) = cli(None, &["reload"]);
    assert!(!ok);
    assert!(
        err.contains("HTTP 401") && err.contains("TRUNKD_ADMIN_TOKEN"),
        "{err}"
    );
    let (ok, out, err) = cli(Some(OPERATOR), &["reload"]);
    assert!(ok, "{err}");
    assert!(out.contains("reloaded"), "{out}");
    let (ok, out, _) = cli(Some(READ), &["calls"]);
    assert!(ok && out.trim_end().ends_with("0 call(s)"), "{out}");
    let (ok, out, _) = cli(Some(READ), &["routes"]);
    assert!(ok && out.contains(&format!("{CARRIER}:9/UDP")), "{out}");
    let (ok, out, err) = cli(
        Some(OPERATOR),
        &["numbers", "set-calling-name", "+12065550101", "Front Desk"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("Front Desk"), "{out}");
}

/// Create, change and delete resources and settings through the API: each
/// write lands in the file (checked by loading it as `trunkd check-config`
/// would, and by reading it back through the API), a wrong value is 422
/// with the file's field, and deletion rules hold.
#[test]
fn resources_are_created_changed_and_deleted_through_the_api() {
    let ports = Ports::pick();
    let lab = Lab {
        hosts: &host(CARRIER, 9, ""),
        ..Default::default()
    };
    let d = Daemon::start("api-crud", ports, &with_tokens(&lab.config(ports)));
    let admin = d.admin();
    let call = |method: &str, path: &str, body: &str| api(admin, method, path, Some(ADMIN), body);
    // The file holds credentials: an operator's 0600 stays 0600 through
    // the API's rewrites, whatever the daemon's umask.
    let file = d.dir.join("trunkd.toml");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    let (status, _, body) = call(
        "POST",
        "/voice-connectors",
        r#"{"VoiceConnectorId":"vc-api","Name":"Made by API","RequireEncryption":false}"#,
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(json(&body)["VoiceConnector"]["Name"], "Made by API");
    let (status, _, body) = call(
        "PUT",
        "/voice-connectors/vc-api/termination",
        r#"{"Termination":{"CpsLimit":7,"CallingRegions":["US","CA"],"CidrAllowedList":["10.9.0.0/16"],"Disabled":false}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (_, _, body) = call("GET", "/voice-connectors/vc-api/termination", "");
    let t = &json(&body)["Termination"];
    assert_eq!(
        (t["CpsLimit"].clone(), t["CallingRegions"].clone()),
        (7.into(), serde_json::json!(["US", "CA"]))
    );
    let (status, _, body) = call(
        "POST",
        "/voice-connectors/vc-api/termination/credentials",
        r#"{"Credentials":[{"Username":"pbx9","Password":"s3cret-9"}]}"#,
    );
    assert_eq!(status, 204, "{body}");
    let (_, _, body) = call(
        "GET",
        "/voice-connectors/vc-api/termination/credentials",
        "",
    );
    assert_eq!(json(&body)["Usernames"], serde_json::json!(["pbx9"]));
    let audit = std::fs::read_to_string(d.dir.join("var/audit.jsonl")).unwrap();
    assert!(
        !audit.contains("s3cret-9") && audit.contains("REDACTED"),
        "{audit}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the API's rewrite changed the file's mode");
    }
    let (status, _, body) = call(
        "PUT",
        "/voice-connectors/vc-api/origination",
        r#"{"Origination":{"Routes":[{"Host":"127.0.0.4","Port":5070,"Protocol":"UDP","Priority":1,"Weight":5}],"Disabled":false}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (_, _, body) = call("GET", "/voice-connectors/vc-api/origination", "");
    assert_eq!(json(&body)["Origination"]["Routes"][0]["Port"], 5070);
    let (status, _, body) = call(
        "PUT",
        "/voice-connectors/vc-api/emergency-calling-configuration",
        r#"{"EmergencyCallingConfiguration":{"DNIS":[{"EmergencyPhoneNumber":"+12065550199","CallingCountry":"US"}]}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = call(
        "PUT",
        "/voice-connectors/vc-api/logging-configuration",
        r#"{"LoggingConfiguration":{"EnableSIPLogs":true}}"#,
    );
    assert_eq!(
        (
            status,
            json(&body)["LoggingConfiguration"]["EnableSIPLogs"].clone()
        ),
        (200, true.into())
    );

    // A value the file refuses is 422 naming the file's field; a field the
    // API does not know is 400.
    let (status, _, body) = call(
        "PUT",
        "/voice-connectors/vc-api/termination",
        r#"{"Termination":{"CpsLimit":0}}"#,
    );
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("voice_connectors[id=vc-api].termination.cps_limit"),
        "{body}"
    );
    let (status, _, body) = call(
        "PUT",
        "/voice-connectors/vc-api/termination",
        r#"{"Termination":{"CPS":1}}"#,
    );
    assert_eq!(status, 400, "{body}");

    // A group, an application and a rule.
    let (status, _, body) = call(
        "POST",
        "/voice-connector-groups",
        r#"{"VoiceConnectorGroupId":"grp-api","Name":"API group","VoiceConnectorItems":[{"VoiceConnectorId":"vc-api","Priority":1}]}"#,
    );
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = call(
        "POST",
        "/sip-media-applications",
        r#"{"SipMediaApplicationId":"sma-api","Name":"IVR","AwsRegion":"local","Endpoints":[{"LambdaArn":"http://127.0.0.1:9/sma","Priority":1}]}"#,
    );
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = call(
        "POST",
        "/sip-rules",
        r#"{"SipRuleId":"rule-api","Name":"Host rule","TriggerType":"RequestUriHostname","TriggerValue":"ivr.example.com","TargetApplications":[{"SipMediaApplicationId":"sma-api","Priority":1}]}"#,
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(json(&body)["SipRule"]["TriggerValue"], "ivr.example.com");

    // Tags, by the managed service's ARN shape.
    let arn = "arn:aws:chime:local:000000000000:vc/vc-api";
    let (status, _, body) = call(
        "POST",
        "/tags?operation=tag-resource",
        &format!(
            r#"{{"ResourceARN":"{arn}","Tags":[{{"Key":"team","Value":"voice"}},{{"Key":"env","Value":"lab"}}]}}"#
        ),
    );
    assert_eq!(status, 204, "{body}");
    let (status, _, _) = call(
        "POST",
        "/tags?operation=untag-resource",
        &format!(r#"{{"ResourceARN":"{arn}","TagKeys":["env"]}}"#),
    );
    assert_eq!(status, 204);
    let (_, _, body) = call("GET", &format!("/tags?arn={arn}"), "");
    assert_eq!(
        json(&body)["Tags"],
        serde_json::json!([{"Key": "team", "Value": "voice"}])
    );

    // Deletion rules: the VC is in a group, the application is a rule's
    // target, the rule is enabled.
    assert_eq!(call("DELETE", "/voice-connectors/vc-api", "").0, 409);
    assert_eq!(call("DELETE", "/sip-media-applications/sma-api", "").0, 409);
    assert_eq!(call("DELETE", "/sip-rules/rule-api", "").0, 409);
    assert_eq!(
        call("PUT", "/sip-rules/rule-api", r#"{"Disabled":true}"#).0,
        200
    );
    assert_eq!(call("DELETE", "/sip-rules/rule-api", "").0, 204);
    assert_eq!(call("DELETE", "/sip-media-applications/sma-api", "").0, 204);
    assert_eq!(call("DELETE", "/voice-connector-groups/grp-api", "").0, 204);
    assert_eq!(
        call(
            "DELETE",
            "/voice-connectors/vc-api/emergency-calling-configuration",
            ""
        )
        .0,
        204
    );
    assert_eq!(call("DELETE", "/voice-connectors/vc-api", "").0, 204);
    assert_eq!(call("GET", "/voice-connectors/vc-api", "").0, 404);

    // A number added to the inventory, unassigned.
    let (status, _, body) = call(
        "POST",
        "/phone-numbers",
        r#"{"E164PhoneNumber":"+12065550177","ProductType":"VoiceConnector","CallingName":"Lab"}"#,
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(json(&body)["PhoneNumber"]["Status"], "Unassigned");

    let check = std::process::Command::new(env!("CARGO_BIN_EXE_trunkd"))
        .args(["check-config", "--config"])
        .arg(d.dir.join("trunkd.toml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let file = std::fs::read_to_string(d.dir.join("trunkd.toml")).unwrap();
    assert!(
        !file.contains("vc-api") && file.contains("+12065550177"),
        "{file}"
    );
    assert!(file.contains("# Tokens are stored as their SHA-256"));
}

/// `GET /calls` lists a call in progress with its quality so far, and
/// `DELETE /calls/{transactionId}` hangs it up: both sides get a BYE, the
/// CDR is written, and the list is empty again.
#[test]
fn a_call_in_progress_is_listed_with_its_quality_and_hung_up_on_request() {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let mut uas = SippBg::uas(
        "uas_answer.xml",
        CARRIER,
        carrier,
        &["-m", "1", "-rtp_echo"],
    );
    let lab = Lab {
        hosts: &host(CARRIER, carrier, ""),
        ..Default::default()
    };
    let d = Daemon::start("api-calls", ports, &with_tokens(&lab.config(ports)));
    let admin = d.admin();
    let target = d.sip().to_string();
    let pbx = std::thread::spawn(move || {
        sipp(&[
            "-sf",
            repo().join("tests/sipp/uac_recv_bye.xml").to_str().unwrap(),
            "-i",
            crate::calls::PBX,
            "-s",
            "+12065550199",
            "-key",
            "caller",
            "+12065550100",
            "-m",
            "1",
            "-timeout",
            "20s",
            &target,
        ])
    });
    // The call is up: listed, with the two sides' figures.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let call = loop {
        let (_, _, body) = api(admin, "GET", "/calls", Some(READ), "");
        let calls = json(&body)["Calls"].as_array().cloned().unwrap_or_default();
        if let Some(c) = calls.first() {
            break c.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no call listed");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Listed from the start (ringing too); hang up once it is answered.
    d.wait_metric(
        "voice_connector_calls_answered_total{voice_connector_id=\"vc-east\",region=\"local\",direction=\"outbound\"}",
        1.0,
    );
    assert_eq!(call["Kind"], "bridge");
    assert_eq!(call["Direction"], "Outbound");
    assert_eq!(call["VoiceConnectorId"], "vc-east");
    assert_eq!(call["FromPhoneNumber"], "+12065550100");
    assert_eq!(call["ToPhoneNumber"], "+12065550199");
    assert!(call["Quality"]["Customer"].is_object(), "{call}");
    assert!(call["Quality"]["Remote"].is_object(), "{call}");
    let txn = call["TransactionId"].as_str().unwrap().to_owned();
    // A read-only token may not hang up; an operator may.
    assert_eq!(
        api(admin, "DELETE", &format!("/calls/{txn}"), Some(READ), "").0,
        403
    );
    assert_eq!(
        api(
            admin,
            "DELETE",
            &format!("/calls/{txn}"),
            Some(OPERATOR),
            ""
        )
        .0,
        204
    );
    let out = pbx.join().unwrap();
    assert_ok(&out, "the caller gets trunkd's BYE");
    assert!(
        uas.wait(Duration::from_secs(10)).0,
        "the callee gets trunkd's BYE"
    );
    let cdr = &wait_cdrs(&crate::calls::records(&d), 1)[0];
    assert_eq!(cdr["TransactionId"], txn.as_str());
    assert_eq!(cdr["Status"], "Completed");
    // The CDR is written before the call task has stopped its relay.
    d.wait_metric("sip_engine_calls", 0.0);
    let (_, _, body) = api(admin, "GET", "/calls", Some(READ), "");
    assert_eq!(json(&body)["Calls"], serde_json::json!([]));
    assert_eq!(
        api(
            admin,
            "DELETE",
            &format!("/calls/{txn}"),
            Some(OPERATOR),
            ""
        )
        .0,
        404
    );
}

/// `[admin] tls_cert_file` / `tls_key_file`: the API answers only over
/// TLS (a client verifying the certificate against its CA gets the
/// resources), plain HTTP gets no HTTP answer, and the CLI speaks TLS to
/// it, trusting exactly the configured certificate.
#[test]
fn the_api_over_tls() {
    use rustls::pki_types::ServerName;
    let ca = crate::tls::Ca::new();
    let dir = crate::tls::cert_dir("admin-api");
    let (cert, key) = crate::tls::write_leaf(&dir, "admin", &ca.issue(&["127.0.0.1"]));
    let ports = Ports::pick();
    let lab = Lab {
        hosts: &host(CARRIER, 9, ""),
        ..Default::default()
    };
    let text = with_tokens(&lab.config(ports)).replacen(
        "[admin]\n",
        &format!("[admin]\ntls_cert_file = {cert:?}\ntls_key_file = {key:?}\n"),
        1,
    );
    let d = Daemon::start("api-tls", ports, &text);
    let admin = d.admin();

    // Plain HTTP: no HTTP answer.
    let mut plain = TcpStream::connect(admin).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        plain,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );

    // TLS, verified against the test CA.
    let mut roots = rustls::RootCertStore::empty();
    let ca_file = ca.write(&dir);
    roots
        .add(crate::tls::der(&std::fs::read_to_string(ca_file).unwrap()))
        .unwrap();
    let config = std::sync::Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let tcp = TcpStream::connect(admin).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET /voice-connectors HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {READ}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    let _ = tls.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"VoiceConnectorId\":\"vc-east\""), "{resp}");

    // The CLI over TLS, pinned to the configured certificate.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trunkd"))
        .args(["numbers", "show", "+12065550100", "--config"])
        .arg(d.dir.join("trunkd.toml"))
        .env("TRUNKD_ADMIN_TOKEN", READ)
        .env_remove("TRUNKD_ADMIN_TOKEN_FILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("+12065550100"));
}
