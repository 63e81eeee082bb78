//! Every validation rule of docs/configuration.md, each asserting the exact
//! error text: file, resource and field, and the reason.

mod common;
use common::{errors, write, VALID};

/// `VALID` with `from` replaced by `to` (which must occur).
fn with(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "fixture lacks {from:?}");
    VALID.replacen(from, to, 1)
}

fn assert_errors(text: &str, expected: &[&str]) {
    assert_eq!(errors(text), expected, "\n--- file ---\n{text}");
}

#[test]
fn the_fixture_is_valid_and_counted() {
    assert_errors(VALID, &[]);
    let c = trunkd_config::load(&write(VALID)).unwrap();
    let counts = c.resources.counts();
    assert_eq!(
        (
            counts.voice_connectors,
            counts.voice_connector_groups,
            counts.carriers
        ),
        (2, 1, 1)
    );
    assert_eq!(
        (
            counts.numbers,
            counts.sip_media_applications,
            counts.sip_rules
        ),
        (3, 1, 1)
    );
    let vc = c.resources.voice_connector("vc-west").unwrap();
    assert!(
        vc.termination.disabled,
        "no [termination] section means disabled"
    );
    assert!(!vc.origination.disabled);
    assert_eq!(vc.origination.routes[0].port.get(), 5093);
    let n = c.resources.number("+12065550150".parse().unwrap()).unwrap();
    assert_eq!(
        n.assignment,
        trunkd_core::Assignment::SipRule("rule-1".parse().unwrap())
    );
}

#[test]
fn route_weight_out_of_range_names_the_route() {
    assert_errors(
        &with("port = 5092, protocol = \"UDP\", priority = 2, weight = 20", "port = 5092, protocol = \"UDP\", priority = 2, weight = 0"),
        &["F: voice_connectors[id=vc-east].origination.routes[2].weight: 0 is out of range 1..=100"],
    );
}

#[test]
fn route_priority_port_and_protocol() {
    assert_errors(
        &with(
            "{ host = \"127.0.0.1\", port = 5091, protocol = \"TCP\", priority = 2, weight = 10 }",
            "{ host = \"127.0.0.1\", port = 70000, protocol = \"SCTP\", priority = 101, weight = 10 }",
        ),
        &[
            "F: voice_connectors[id=vc-east].origination.routes[1].protocol: \"SCTP\" is not one of UDP, TCP, TLS",
            "F: voice_connectors[id=vc-east].origination.routes[1].port: 70000 is out of range 1..=65535",
            "F: voice_connectors[id=vc-east].origination.routes[1].priority: 101 is out of range 1..=100",
        ],
    );
}

#[test]
fn unknown_keys_are_all_reported_with_their_place() {
    let text = with(
        "name = \"East PBX\"",
        "name = \"East PBX\"\ncolour = \"blue\"",
    )
    .replacen("cps_limit = 10", "cps_limit = 10\ncps = 3", 1)
    .replacen("[sip]", "[sip]\nport = 5060", 1)
    .replacen("[daemon]", "[deamon]\nregion = \"x\"\n[daemon]", 1);
    // Sorted by place; the rest of the file is still validated.
    assert_errors(
        &text,
        &[
            "F: deamon: unknown key",
            "F: sip.port: unknown key",
            "F: voice_connectors[id=vc-east].colour: unknown key",
            "F: voice_connectors[id=vc-east].termination.cps: unknown key",
        ],
    );
}

#[test]
fn a_wrong_type_names_its_place() {
    assert_errors(
        &with("cps_limit = 10", "cps_limit = \"ten\""),
        &["F: voice_connectors[id=vc-east].termination.cps_limit: invalid type: string \"ten\", expected an integer"],
    );
}

#[test]
fn duplicate_ids() {
    assert_errors(
        &with("id = \"vc-west\"", "id = \"vc-east\""),
        &[
            "F: voice_connectors[id=vc-east].id: is a duplicate: another resource of this kind has the same id",
            // The group's reference to the renamed VC now dangles too.
            "F: voice_connector_groups[id=grp-main].voice_connector_items[1].voice_connector_id: voice connector \"vc-west\" does not exist",
        ],
    );
}

#[test]
fn invalid_ids() {
    assert_errors(&with("id = \"vc-west\"", "id = \"VC West\""), &[
        "F: voice_connectors[id=VC West].id: contains 'V'; allowed are a-z, 0-9 and '-'",
        "F: voice_connector_groups[id=grp-main].voice_connector_items[1].voice_connector_id: voice connector \"vc-west\" does not exist",
    ]);
    assert_errors(
        &with("id = \"carrier-a\"", "name = \"no id\""),
        &[
            "F: carriers[0].name: unknown key",
            "F: carriers[0].id: is required",
        ],
    );
}

#[test]
fn dangling_references() {
    assert_errors(&with("voice_connector_id = \"vc-east\"\n", "voice_connector_id = \"vc-north\"\n"), &[
        "F: numbers[e164_phone_number=+12065550100].voice_connector_id: voice connector \"vc-north\" does not exist",
    ]);
    assert_errors(&with("voice_connector_group_id = \"grp-main\"", "voice_connector_group_id = \"grp-gone\""), &[
        "F: numbers[e164_phone_number=+12065550101].voice_connector_group_id: voice connector group \"grp-gone\" does not exist",
    ]);
    assert_errors(&with("{ sip_media_application_id = \"sma-ivr\"", "{ sip_media_application_id = \"sma-gone\""), &[
        "F: sip_rules[id=rule-1].target_applications[0].sip_media_application_id: SIP media application \"sma-gone\" does not exist",
    ]);
    assert_errors(&with("credentials = [ { username", "carriers = [\"carrier-b\"]\ncredentials = [ { username"), &[
        "F: voice_connectors[id=vc-east].termination.carriers[0]: carrier \"carrier-b\" does not exist",
    ]);
}

#[test]
fn a_deleted_vc_with_numbers_still_assigned_is_a_dangling_reference() {
    let text = with("[[voice_connectors]]\nid = \"vc-west\"\n\n[voice_connectors.origination]\nroutes = [ { host = \"127.0.0.1\", port = 5093 } ]\n", "")
        .replacen("{ voice_connector_id = \"vc-west\", priority = 2 }", "{ voice_connector_id = \"vc-east\", priority = 2 }", 1);
    assert_errors(&text, &[
        "F: voice_connector_groups[id=grp-main].voice_connector_items[1].voice_connector_id: voice connector \"vc-east\" is listed twice",
    ]);
    let text = with("[[voice_connectors]]\nid = \"vc-west\"\n\n[voice_connectors.origination]\nroutes = [ { host = \"127.0.0.1\", port = 5093 } ]\n", "");
    assert_errors(&text, &[
        "F: voice_connector_groups[id=grp-main].voice_connector_items[1].voice_connector_id: voice connector \"vc-west\" does not exist",
    ]);
}

#[test]
fn a_number_assigned_twice() {
    assert_errors(&with("voice_connector_id = \"vc-east\"\n", "voice_connector_id = \"vc-east\"\nvoice_connector_group_id = \"grp-main\"\n"), &[
        "F: numbers[e164_phone_number=+12065550100].voice_connector_group_id: the number is assigned twice: set voice_connector_id or voice_connector_group_id, not both",
    ]);
    let dup = format!("{VALID}\n[[numbers]]\ne164_phone_number = \"+12065550100\"\nvoice_connector_id = \"vc-west\"\n");
    assert_errors(&dup, &["F: numbers[e164_phone_number=+12065550100].e164_phone_number: is a duplicate: the number is listed twice"]);
}

#[test]
fn numbers_must_be_e164() {
    assert_errors(
        &with(
            "\"+12065550100\"\nvoice_connector_id",
            "\"2065550100\"\nvoice_connector_id",
        ),
        &["F: numbers[e164_phone_number=2065550100].e164_phone_number: must start with '+'"],
    );
    assert_errors(&with("\"+12065550101\"", "\"+1206555010199999\""), &[
        "F: numbers[e164_phone_number=+1206555010199999].e164_phone_number: must have 1 to 15 digits after '+', has 16",
    ]);
    assert_errors(&with("cps_limit = 10", "cps_limit = 10\ndefault_phone_number = \"+1 206\""), &[
        "F: voice_connectors[id=vc-east].termination.default_phone_number: must have only digits after '+'",
    ]);
}

#[test]
fn calling_name_and_product_type() {
    assert_errors(&with("voice_connector_id = \"vc-east\"\n", "voice_connector_id = \"vc-east\"\ncalling_name = \"North-Campus!\"\n"), &[
        "F: numbers[e164_phone_number=+12065550100].calling_name: \"North-Campus!\" must be 2 to 15 characters of A-Z, a-z, 0-9 and space",
    ]);
    assert_errors(&with("product_type = \"SipMediaApplicationDialIn\"", "product_type = \"SipMediaApplicationDialIn\"\nvoice_connector_id = \"vc-east\""), &[
        "F: numbers[e164_phone_number=+12065550150].product_type: a SipMediaApplicationDialIn number is used by SIP rules and cannot be assigned to a voice connector or group",
    ]);
}

#[test]
fn deletion_queue() {
    assert_errors(&with("voice_connector_id = \"vc-east\"\n", "voice_connector_id = \"vc-east\"\ndeleted_at = \"2026-01-01T00:00:00Z\"\n"), &[
        "F: numbers[e164_phone_number=+12065550100].deleted_at: a number in the deletion queue cannot be assigned",
    ]);
    assert_errors(&with("e164_phone_number = \"+12065550101\"\nvoice_connector_group_id = \"grp-main\"", "e164_phone_number = \"+12065550101\"\ndeleted_at = \"soon\""), &[
        "F: numbers[e164_phone_number=+12065550101].deleted_at: \"soon\" is not an RFC 3339 time such as 2026-11-20T10:00:00Z",
    ]);
}

#[test]
fn group_priorities_must_be_unique_and_in_range() {
    assert_errors(&with("voice_connector_id = \"vc-west\", priority = 2", "voice_connector_id = \"vc-west\", priority = 1"), &[
        "F: voice_connector_groups[id=grp-main].voice_connector_items[1].priority: 1 is already used by voice_connector_items[0]; priorities must be unique",
    ]);
    assert_errors(&with("voice_connector_id = \"vc-west\", priority = 2", "voice_connector_id = \"vc-west\", priority = 100"), &[
        "F: voice_connector_groups[id=grp-main].voice_connector_items[1].priority: 100 is out of range 1..=99",
    ]);
}

#[test]
fn group_and_route_limits() {
    let text = format!(
        "[limits]\nmax_voice_connectors_per_group = 1\nmax_routes_per_voice_connector = 2\n{VALID}"
    );
    assert_errors(&text, &[
        "F: voice_connectors[id=vc-east].origination.routes: has 3 routes, limits.max_routes_per_voice_connector is 2",
        "F: voice_connector_groups[id=grp-main].voice_connector_items: has 2 voice connectors, limits.max_voice_connectors_per_group is 1",
    ]);
    let text = format!("[limits]\nmax_voice_connector_groups = 0\n{VALID}");
    assert_errors(
        &text,
        &["F: limits.max_voice_connector_groups: 0 is out of range 1..=10000000"],
    );
}

#[test]
fn cidrs_and_hosts() {
    assert_errors(&with("cidr_allowed_list = [\"127.0.0.0/8\"]", "cidr_allowed_list = [\"127.0.0.0/8\", \"10.0.0.0/33\", \"10.1.2.3\"]"), &[
        "F: voice_connectors[id=vc-east].termination.cidr_allowed_list[1]: \"10.0.0.0/33\" is not a CIDR (e.g. 192.0.2.0/24) or an IP address",
    ]);
    assert_errors(&with("source_cidrs = [\"127.0.0.1/32\"]", "source_cidrs = [\"localhost\"]"), &[
        "F: carriers[id=carrier-a].source_cidrs[0]: \"localhost\" is not a CIDR (e.g. 192.0.2.0/24) or an IP address",
    ]);
    assert_errors(&with("{ host = \"127.0.0.1\", port = 5080", "{ host = \"bad_host!\", port = 5080"), &[
        "F: carriers[id=carrier-a].hosts[0].host: \"bad_host!\" is neither an IP address nor a valid host name",
    ]);
}

#[test]
fn cps_and_calling_regions() {
    assert_errors(
        &with("cps_limit = 10", "cps_limit = 0"),
        &["F: voice_connectors[id=vc-east].termination.cps_limit: 0 is out of range 1..=100000"],
    );
    assert_errors(&with("calling_regions = [\"US\", \"CA\"]", "calling_regions = [\"US\", \"usa\", \"US\"]"), &[
        "F: voice_connectors[id=vc-east].termination.calling_regions[1]: \"usa\" is not an ISO 3166-1 alpha-2 country code with a telephone numbering plan",
        "F: voice_connectors[id=vc-east].termination.calling_regions[2]: US is listed twice",
    ]);
}

#[test]
fn credentials() {
    assert_errors(&with("{ username = \"pbx1\", password = \"secret1\" }", "{ username = \"pbx1\", password = \"x\", ha1_md5 = \"00\" }"), &[
        "F: voice_connectors[id=vc-east].termination.credentials[0]: needs exactly one of password, ha1_md5, ha1_sha256",
    ]);
    assert_errors(&with("{ username = \"pbx1\", password = \"secret1\" }", "{ username = \"pbx1\", ha1_md5 = \"xyz\" }"), &[
        "F: voice_connectors[id=vc-east].termination.credentials[0].ha1_md5: must be 32 hexadecimal digits",
    ]);
    let text = with("[voice_connectors.origination]\nroutes = [ { host = \"127.0.0.1\", port = 5093 } ]", "[voice_connectors.termination]\ncredentials = [ { username = \"pbx1\", ha1_sha256 = \"00\" } ]\n[voice_connectors.origination]\nroutes = [ { host = \"127.0.0.1\", port = 5093 } ]");
    assert_errors(&text, &[
        "F: voice_connectors[id=vc-west].termination.credentials[0].username: \"pbx1\" is already used by voice_connectors[id=vc-east]; a digest username identifies one voice connector",
        "F: voice_connectors[id=vc-west].termination.credentials[0].ha1_sha256: must be 64 hexadecimal digits",
    ]);
}

#[test]
fn an_enabled_rule_needs_targets_and_a_dial_in_number() {
    assert_errors(&with("target_applications = [ { sip_media_application_id = \"sma-ivr\", priority = 1 } ]", ""), &[
        "F: sip_rules[id=rule-1].target_applications: an enabled SIP rule needs at least one target application",
    ]);
    assert_errors(&with("trigger_value = \"+12065550150\"", "trigger_value = \"+12065550100\""), &[
        "F: sip_rules[id=rule-1].trigger_value: +12065550100 has product_type VoiceConnector; a SIP rule needs a SipMediaApplicationDialIn number",
    ]);
    assert_errors(&with("trigger_type = \"ToPhoneNumber\"", "trigger_type = \"ToNumber\""), &[
        "F: sip_rules[id=rule-1].trigger_type: \"ToNumber\" is not one of ToPhoneNumber, RequestUriHostname",
    ]);
    let disabled = with(
        "target_applications = [ { sip_media_application_id = \"sma-ivr\", priority = 1 } ]",
        "disabled = true",
    );
    assert_errors(&disabled, &[]);
}

#[test]
fn require_encryption_needs_tls_routes() {
    assert_errors(&with("name = \"East PBX\"", "name = \"East PBX\"\nrequire_encryption = true"), &[
        "F: voice_connectors[id=vc-east].origination.routes[0].protocol: is UDP but the voice connector has require_encryption = true; use TLS",
        "F: voice_connectors[id=vc-east].origination.routes[1].protocol: is TCP but the voice connector has require_encryption = true; use TLS",
        "F: voice_connectors[id=vc-east].origination.routes[2].protocol: is UDP but the voice connector has require_encryption = true; use TLS",
    ]);
}

#[test]
fn route_srtp_policy() {
    assert_errors(&with("{ host = \"127.0.0.1\", port = 5093 }", "{ host = \"127.0.0.1\", port = 5093, srtp = \"sometimes\" }"), &[
        "F: voice_connectors[id=vc-west].origination.routes[0].srtp: \"sometimes\" is not one of auto, off, offer, require",
    ]);
    for ok in ["auto", "off", "offer", "require"] {
        assert_errors(
            &with(
                "{ host = \"127.0.0.1\", port = 5093 }",
                &format!("{{ host = \"127.0.0.1\", port = 5093, srtp = \"{ok}\" }}"),
            ),
            &[],
        );
    }
    // A VC that requires encryption cannot be offered plain RTP.
    let strict = with(
        "[[voice_connectors]]\nid = \"vc-west\"",
        "[[voice_connectors]]\nid = \"vc-west\"\nrequire_encryption = true",
    )
    .replacen(
        "{ host = \"127.0.0.1\", port = 5093 }",
        "{ host = \"127.0.0.1\", port = 5093, protocol = \"TLS\", srtp = \"offer\" }",
        1,
    );
    assert_errors(&strict, &[
        "F: voice_connectors[id=vc-west].origination.routes[0].srtp: must be auto or require: the voice connector has require_encryption = true",
    ]);
}

#[test]
fn route_tls_server_name() {
    assert_errors(&with("{ host = \"127.0.0.1\", port = 5093 }", "{ host = \"127.0.0.1\", port = 5093, tls_server_name = \"sbc.example\" }"), &[
        "F: voice_connectors[id=vc-west].origination.routes[0].tls_server_name: is only used with protocol = \"TLS\"",
    ]);
    assert_errors(&with("{ host = \"127.0.0.1\", port = 5093 }", "{ host = \"127.0.0.1\", port = 5093, protocol = \"TLS\", tls_server_name = \"not a name\" }"), &[
        "F: voice_connectors[id=vc-west].origination.routes[0].tls_server_name: \"not a name\" is not a DNS name",
    ]);
    assert_errors(&with("{ host = \"127.0.0.1\", port = 5093 }", "{ host = \"127.0.0.1\", port = 5093, protocol = \"TLS\", tls_server_name = \"sbc.example\" }"), &[]);
}

#[test]
fn ipv4_only_forbids_ipv6_routes() {
    assert_errors(&with("{ host = \"127.0.0.1\", port = 5093 }", "{ host = \"::1\", port = 5093 }"), &[
        "F: voice_connectors[id=vc-west].origination.routes[0].host: is an IPv6 address but network_type is IPV4_ONLY",
    ]);
    let dual = with(
        "[[voice_connectors]]\nid = \"vc-west\"",
        "[[voice_connectors]]\nid = \"vc-west\"\nnetwork_type = \"DUAL_STACK\"",
    )
    .replacen(
        "{ host = \"127.0.0.1\", port = 5093 }",
        "{ host = \"::1\", port = 5093 }",
        1,
    );
    assert_errors(&dual, &[]);
}

#[test]
fn tls_settings() {
    // Listeners need the certificate; the section alone is not enough.
    assert_errors(
        &with(
            "[sip]",
            "[tls]\nverify_server = false\n[sip]\ntls = [\"127.0.0.1:5061\"]",
        ),
        &[
            "F: tls.cert_file: is required: sip.tls has listeners",
            "F: tls.key_file: is required: sip.tls has listeners",
        ],
    );
    // Client side only (outgoing TLS to carriers): no certificate needed.
    assert_errors(&format!("[tls]\nverify_server = false\n{VALID}"), &[]);
    assert_errors(
        &format!("[tls]\nhandshake_timeout_seconds = 0\n{VALID}"),
        &["F: tls.handshake_timeout_seconds: 0 is out of range 1..=60"],
    );
    let e = errors(&format!("[tls]\nca_file = \"nope.pem\"\n{VALID}"));
    assert!(
        e.len() == 1
            && e[0].starts_with("F: tls.ca_file: /")
            && e[0].ends_with("/nope.pem does not exist or is not a file"),
        "{e:?}"
    );
    // SNI certificates: a DNS name, both files, and a default certificate.
    assert_errors(
        &format!(
            "[tls]\nsni_certificates = [ {{ server_name = \"not a name\" }} ]\n{VALID}"
        ),
        &[
            "F: tls.sni_certificates[0].server_name: \"not a name\" is not a DNS name",
            "F: tls.sni_certificates[0].server_name: needs tls.cert_file: it serves clients that send no or another name",
            "F: tls.sni_certificates[0].cert_file: is required",
            "F: tls.sni_certificates[0].key_file: is required",
        ],
    );
    // mTLS per VC needs the CA that verifies client certificates.
    assert_errors(
        &with("cps_limit = 10", "cps_limit = 10\nrequire_client_certificate = true"),
        &["F: voice_connectors[id=vc-east].termination.require_client_certificate: needs tls.client_ca_file: client certificates are verified against it"],
    );
}

#[test]
fn daemon_settings() {
    assert_errors(&with("[sip]\nudp = [\"127.0.0.1:5060\"]", "[sip]\nmax_message_bytes = 100\nmax_transactions = 10\nudp_receive_buffer_bytes = -1\nudp = [\"127.0.0.1\"]"), &[
        "F: sip.udp[0]: \"127.0.0.1\" is not a socket address (e.g. 127.0.0.1:5060 or [::1]:5060)",
        "F: sip.max_message_bytes: 100 is out of range 1024..=1048576",
        "F: sip.max_transactions: 10 is out of range 1000..=10000000",
        "F: sip.udp_receive_buffer_bytes: -1 is out of range 0..=1073741824",
    ]);
    assert_errors(
        &with(
            "[sip]\nudp = [\"127.0.0.1:5060\"]\ntcp = [\"127.0.0.1:5060\"]",
            "[sip]\nudp = []\ntcp = []",
        ),
        &["F: sip: has no listener: set at least one of udp, tcp, tls"],
    );
    assert_errors(
        &with("[sip]", "[sip]\ntls = [\"127.0.0.1:5061\"]"),
        &["F: sip.tls: TLS listeners need a [tls] section with cert_file and key_file"],
    );
    let e = errors(&format!("[tls]\ncert_file = \"missing.pem\"\n{VALID}"));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("F: tls.cert_file: /")
            && e[0].ends_with("/missing.pem does not exist or is not a file"),
        "{e:?}"
    );
    assert_eq!(e[1], "F: tls.key_file: is required when cert_file is set");
    assert_errors(
        &format!("[media]\nport_min = 6000\nport_max = 6000\n{VALID}"),
        &["F: media.port_max: 6000 must be greater than port_min (6000)"],
    );
    assert_errors(
        &format!("[logging]\nformat = \"xml\"\n{VALID}"),
        &["F: logging.format: \"xml\" is not one of text, json"],
    );
    assert_errors(
        &format!("[logging]\nsip_log_max_bytes = 100\nsip_log_max_age_hours = 0\nsip_log_keep_files = -1\n{VALID}"),
        &[
            "F: logging.sip_log_max_bytes: 100 is out of range 4096..=1099511627776",
            "F: logging.sip_log_max_age_hours: 0 is out of range 1..=8760",
            "F: logging.sip_log_keep_files: -1 is out of range 0..=1000",
        ],
    );
    assert_errors(
        &with("region = \"local\"", "region = \"Local Site\""),
        &["F: daemon.region: \"Local Site\" must be 1 to 32 characters of a-z, 0-9 and '-'"],
    );
}

#[test]
fn termination_needs_a_carrier() {
    let text = with("[[carriers]]\nid = \"carrier-a\"\nsource_cidrs = [\"127.0.0.1/32\"]\nhosts = [ { host = \"127.0.0.1\", port = 5080, protocol = \"UDP\", priority = 1, weight = 100 } ]\n", "");
    assert_errors(&text, &["F: voice_connectors[id=vc-east].termination: is enabled but the file has no [[carriers]] to send calls to"]);
}

#[test]
fn many_errors_are_all_reported() {
    let text = with("cps_limit = 10", "cps_limit = 0")
        .replacen("weight = 20", "weight = 0", 1)
        .replacen("\"+12065550101\"", "\"12065550101\"", 1);
    assert_eq!(errors(&text).len(), 3, "{:#?}", errors(&text));
}

#[test]
fn a_missing_file_is_one_clear_error() {
    let e = trunkd_config::load(std::path::Path::new("/nonexistent/trunkd.toml")).unwrap_err();
    assert_eq!(e.len(), 1);
    assert!(
        e.to_string().starts_with("/nonexistent/trunkd.toml: "),
        "{e}"
    );
    assert!(e.to_string().contains("not found"), "{e}");
}

#[test]
fn a_toml_syntax_error_is_reported() {
    let e = errors("[daemon\nregion = 1");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("F: "), "{e:?}");
}

#[test]
fn secrets_do_not_appear_in_debug_output() {
    let c = trunkd_config::load(&write(VALID)).unwrap();
    let dump = format!("{c:?}");
    assert!(!dump.contains("secret1"), "password leaked in Debug");
}

#[test]
fn relative_paths_resolve_against_the_files_directory() {
    let path = write(VALID);
    let c = trunkd_config::load(&path).unwrap();
    let dir = path.parent().unwrap();
    assert_eq!(c.settings.daemon.state_dir, dir.join("var"));
    assert_eq!(
        c.settings.records.directory,
        dir.join("var").join("records")
    );
    assert_eq!(
        c.settings.daemon.pid_file,
        dir.join("var").join("trunkd.pid")
    );
}

#[test]
fn the_bundled_example_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/trunkd.toml");
    let c = trunkd_config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let n = c.resources.counts();
    assert_eq!(
        (
            n.voice_connectors,
            n.voice_connector_groups,
            n.sip_media_applications,
            n.sip_rules
        ),
        (2, 1, 1, 1)
    );
    assert!(n.carriers >= 2 && n.numbers >= 5);
}

/// SPEC §5.3: SIP message logs rotate at 64 MiB or a day, ten kept, unless
/// `[logging]` says otherwise.
#[test]
fn sip_log_rotation_defaults_and_overrides() {
    let c = trunkd_config::load(&write(VALID)).unwrap();
    let l = &c.settings.logging;
    assert_eq!(
        (l.sip_log_max_bytes, l.sip_log_max_age, l.sip_log_keep_files),
        (64 << 20, std::time::Duration::from_secs(86_400), 10)
    );
    let text = format!(
        "[logging]\nsip_log_max_bytes = 4096\nsip_log_max_age_hours = 2\nsip_log_keep_files = 0\n{VALID}"
    );
    let c = trunkd_config::load(&write(&text)).unwrap();
    let l = &c.settings.logging;
    assert_eq!(
        (l.sip_log_max_bytes, l.sip_log_max_age, l.sip_log_keep_files),
        (4096, std::time::Duration::from_secs(7200), 0)
    );
}

/// A valid `whsec_` secret (the Standard Webhooks specification's example).
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn with_events(extra: &str) -> String {
    format!("{VALID}\n{extra}")
}

#[test]
fn event_targets_events_and_notification_targets_are_read_with_their_defaults() {
    let text = with_events(&format!(
        r#"
[[event_targets]]
id = "ops"
type = "webhook"
url = "https://127.0.0.1:8081/events"
secret = "{WHSEC}"

[[event_targets]]
id = "log.file_1"
type = "file"
path = "var/events.jsonl"
"#
    ))
    .replacen(
        "[voice_connectors.origination]\nroutes = [ { host = \"127.0.0.1\", port = 5093 } ]",
        "[voice_connectors.origination]\nroutes = [ { host = \"127.0.0.1\", port = 5093 } ]\n\n[voice_connectors.streaming]\nnotification_targets = [\"ops\", \"log.file_1\"]",
        1,
    );
    assert_errors(&text, &[]);
    let path = write(&text);
    let dir = path.parent().unwrap().to_path_buf();
    let c = trunkd_config::load(&path).unwrap();
    let e = &c.settings.events;
    assert_eq!(e.queue_directory, dir.join("var").join("events"));
    assert_eq!(e.max_queued_events, 10_000);
    assert_eq!(e.max_age, std::time::Duration::from_secs(86_400));
    assert_eq!(e.retry_initial, std::time::Duration::from_millis(1000));
    assert_eq!(e.retry_max, std::time::Duration::from_secs(300));
    assert_eq!(e.request_timeout, std::time::Duration::from_secs(5));
    let ids: Vec<&str> = e.targets.iter().map(|t| t.as_str()).collect();
    assert_eq!(ids, ["ops", "log.file_1"], "every target by default");
    let t = &c.settings.event_targets;
    match &t[0].kind {
        trunkd_config::EventTargetKind::Webhook { url, key } => {
            assert_eq!(url, "https://127.0.0.1:8081/events");
            assert_eq!(
                key.sign(
                    "msg_p5jXN8AQM9LWM0D4loKWxJek",
                    1614265330,
                    br#"{"test": 2432232314}"#
                ),
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        t[1].kind,
        trunkd_config::EventTargetKind::File {
            path: dir.join("var/events.jsonl")
        }
    );
    let vc = c.resources.voice_connector("vc-west").unwrap();
    let n: Vec<&str> = vc
        .streaming
        .notification_targets
        .iter()
        .map(|t| t.as_str())
        .collect();
    assert_eq!(n, ["ops", "log.file_1"]);
    // The secret never shows in the settings' Debug output.
    let debug = format!("{:?}", c.settings);
    assert!(
        !debug.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        "{debug}"
    );
    assert!(debug.contains("WebhookKey(<redacted>)"));
}

#[test]
fn the_events_section_overrides_the_defaults() {
    let text = with_events(
        r#"
[[event_targets]]
id = "a"
type = "file"
path = "/tmp/a.jsonl"

[[event_targets]]
id = "b"
type = "file"
path = "b.jsonl"

[events]
queue_directory = "/var/spool/trunkd-events"
max_queued_events = 5
max_age_seconds = 60
retry_initial_ms = 200
retry_max_seconds = 2
request_timeout_seconds = 1
targets = ["b"]
"#,
    );
    let c = trunkd_config::load(&write(&text)).unwrap();
    let e = &c.settings.events;
    assert_eq!(
        e.queue_directory,
        std::path::PathBuf::from("/var/spool/trunkd-events")
    );
    assert_eq!(
        (
            e.max_queued_events,
            e.max_age.as_secs(),
            e.retry_initial.as_millis(),
            e.retry_max.as_secs(),
            e.request_timeout.as_secs()
        ),
        (5, 60, 200, 2, 1)
    );
    assert_eq!(e.targets.len(), 1);
    assert_eq!(e.targets[0].as_str(), "b");
}

#[test]
fn event_target_errors_name_the_target_and_field_never_the_secret() {
    let text = with_events(
        r#"
[[event_targets]]
id = "ops"
type = "webhook"
url = "ftp://x/events"
secret = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[[event_targets]]
id = "ops"
type = "file"

[[event_targets]]
id = "bad id"
type = "mail"

[[event_targets]]
id = "short"
type = "webhook"
url = "http://127.0.0.1:1/e"
secret = "whsec_c2VjcmV0LXRvby1zaG9ydA=="

[[event_targets]]
id = "nokey"
type = "webhook"
url = "http://127.0.0.1:1/e"

[[event_targets]]
id = "twice"
type = "webhook"
url = "http://127.0.0.1:1/e"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
secret_env = "TRUNKD_NOT_SET_EVER"
path = "x"

[events]
max_queued_events = 0
retry_initial_ms = 5000
retry_max_seconds = 1
targets = ["nope"]
"#,
    );
    let errs = errors(&text);
    assert_eq!(
        errs,
        [
            "F: event_targets[id=ops].id: is a duplicate: another resource of this kind has the same id",
            "F: event_targets[id=bad id].id: \"bad id\" must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'",
            "F: event_targets[id=ops].url: \"ftp://x/events\" is not an http:// or https:// URL",
            "F: event_targets[id=ops].secret: must start with \"whsec_\" (a Standard Webhooks secret)",
            "F: event_targets[id=ops].path: is required",
            "F: event_targets[id=bad id].type: \"mail\" is not one of webhook, file",
            "F: event_targets[id=short].secret: decodes to 16 bytes; the key must be 24 to 64 bytes long",
            "F: event_targets[id=nokey].secret: is required (or secret_file, or secret_env)",
            "F: event_targets[id=twice].secret: set only one of secret, secret_file, secret_env",
            "F: event_targets[id=twice].path: is only used with type = \"file\"",
            "F: events.max_queued_events: 0 is out of range 1..=10000000",
            "F: events.retry_max_seconds: must not be shorter than retry_initial_ms",
            "F: events.targets[0]: \"nope\" is not the id of an [[event_targets]] entry",
        ]
    );
    for e in &errs {
        assert!(!e.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "{e}");
        assert!(!e.contains("c2VjcmV0LXRvby1zaG9ydA"), "{e}");
    }
}

#[test]
fn notification_targets_must_be_one_to_three_configured_ids() {
    let vc = "[voice_connectors.origination]\nroutes = [ { host = \"127.0.0.1\", port = 5093 } ]";
    let target = "\n[[event_targets]]\nid = \"ops\"\ntype = \"file\"\npath = \"e.jsonl\"\n";
    let case = |list: &str| {
        with_events(target).replacen(
            vc,
            &format!("{vc}\n\n[voice_connectors.streaming]\nnotification_targets = {list}"),
            1,
        )
    };
    assert_errors(&case(r#"["ops"]"#), &[]);
    assert_errors(
        &case(r#"["ops", "missing"]"#),
        &["F: voice_connectors[id=vc-west].streaming.notification_targets[1]: \"missing\" is not the id of an [[event_targets]] entry"],
    );
    assert_errors(
        &case("[]"),
        &["F: voice_connectors[id=vc-west].streaming.notification_targets: has 0 ids; 1 to 3 are allowed"],
    );
    assert_errors(
        &case(r#"["ops", "ops", "ops", "ops"]"#),
        &["F: voice_connectors[id=vc-west].streaming.notification_targets: has 4 ids; 1 to 3 are allowed"],
    );
}

/// `VALID` with a `[records]` section (which it lacks) appended.
fn with_records(records: &str) -> String {
    format!("{VALID}\n{records}")
}

const SINK: &str = r#"
[records]
spool_directory = "var/spool-x"
max_spool_bytes = 4096
upload_retry_initial_ms = 250
upload_retry_max_seconds = 5

[[records.sinks]]
id = "s3-main"
type = "s3"
endpoint = "http://127.0.0.1:8333"
bucket = "trunkd-records"
prefix = "site-a/"
access_key_id = "AKEXAMPLE"
secret_access_key = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"
"#;

#[test]
fn a_records_sink_is_read_with_its_defaults() {
    let path = write(&with_records(SINK));
    let c = trunkd_config::load(&path).unwrap();
    let r = &c.settings.records;
    let dir = path.parent().unwrap();
    assert_eq!(r.spool_directory, dir.join("var/spool-x"));
    assert_eq!(r.max_spool_bytes, 4096);
    assert_eq!(
        r.upload_retry_initial,
        std::time::Duration::from_millis(250)
    );
    assert_eq!(r.upload_retry_max, std::time::Duration::from_secs(5));
    assert_eq!(r.sinks.len(), 1);
    let s = &r.sinks[0];
    assert_eq!(
        (
            s.id.as_str(),
            s.endpoint.as_str(),
            s.bucket.as_str(),
            s.region.as_str(),
            s.prefix.as_str(),
            s.access_key_id.as_str(),
            s.secret_access_key.expose()
        ),
        (
            "s3-main",
            "http://127.0.0.1:8333",
            "trunkd-records",
            "us-east-1",
            "site-a/",
            "AKEXAMPLE",
            "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"
        )
    );
    let dump = format!("{c:?}");
    assert!(
        !dump.contains("wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"),
        "secret_access_key leaked in Debug"
    );
}

#[test]
fn the_spool_defaults_to_the_state_directory_and_one_gib() {
    let path = write(VALID);
    let c = trunkd_config::load(&path).unwrap();
    let r = &c.settings.records;
    let dir = path.parent().unwrap();
    assert_eq!(r.spool_directory, dir.join("var").join("spool"));
    assert_eq!(r.max_spool_bytes, 1 << 30);
    assert_eq!(r.upload_retry_initial, std::time::Duration::from_secs(1));
    assert_eq!(r.upload_retry_max, std::time::Duration::from_secs(60));
    assert!(r.sinks.is_empty());
}

#[test]
fn a_bad_records_sink_names_the_file_the_sink_and_the_field_never_the_secret() {
    let bad = SINK
        .replace("http://127.0.0.1:8333", "ftp://store")
        .replace("trunkd-records", "Bad_Bucket")
        .replace("type = \"s3\"", "type = \"gcs\"")
        .replace(
            "secret_access_key = \"wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY\"",
            "secret_access_key = \"wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY\"\nsecret_access_key_env = \"X\"",
        )
        .replace("max_spool_bytes = 4096", "max_spool_bytes = -1");
    let errs = errors(&with_records(&bad));
    assert_eq!(
        errs,
        [
            "F: records.max_spool_bytes: -1 is out of range 0..=9223372036854775807",
            "F: records.sinks[id=s3-main].type: \"gcs\" is not one of s3",
            "F: records.sinks[id=s3-main].endpoint: \"ftp://store\" is not an http:// or https:// URL",
            "F: records.sinks[id=s3-main].bucket: \"Bad_Bucket\" is not a bucket name (3 to 63 of a-z, 0-9, '-', '.')",
            "F: records.sinks[id=s3-main].secret_access_key: set only one of secret_access_key, secret_access_key_file, secret_access_key_env",
        ]
    );
    assert!(errs
        .iter()
        .all(|e| !e.contains("wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY")));
}

#[test]
fn records_sinks_need_unique_ids_and_every_required_field() {
    let two = format!(
        "{SINK}\n[[records.sinks]]\nid = \"s3-main\"\ntype = \"s3\"\nendpoint = \"https://s3.example.net\"\nbucket = \"other\"\naccess_key_id = \"AK2\"\nsecret_access_key_file = \"/nonexistent/trunkd-secret\"\n\n[[records.sinks]]\n"
    );
    assert_errors(
        &with_records(&two),
        &[
            "F: records.sinks[id=s3-main].id: is a duplicate: another records sink has the same id",
            "F: records.sinks[id=s3-main].secret_access_key_file: /nonexistent/trunkd-secret: No such file or directory (os error 2)",
            "F: records.sinks[2].id: is required",
            "F: records.sinks[2].type: is required",
            "F: records.sinks[2].endpoint: is required",
            "F: records.sinks[2].bucket: is required",
            "F: records.sinks[2].access_key_id: is required",
            "F: records.sinks[2].secret_access_key: is required (or secret_access_key_file, or secret_access_key_env)",
        ],
    );
}

/// An SMA's `webhook_secret` is a `whsec_` key given one of three ways;
/// `[applications]` has its defaults and ranges (docs/configuration.md).
#[test]
fn sma_webhook_secrets_and_applications_settings() {
    let sma = "endpoints = [ { url = \"http://127.0.0.1:8080/sma\", priority = 1 } ]";
    let bad = with(sma, &format!("{sma}\nwebhook_secret = \"change-me\""))
        + "\n[applications]\nresponse_timeout_ms = 50\nmax_actions = 0\naudio_max_file_bytes = 10\noutbound_ring_timeout_seconds = 0\n";
    let errs = errors(&bad);
    assert_eq!(
        errs,
        [
            "F: applications.response_timeout_ms: 50 is out of range 100..=60000",
            "F: applications.max_actions: 0 is out of range 1..=100",
            "F: applications.audio_max_file_bytes: 10 is out of range 1024..=134217728",
            "F: applications.outbound_ring_timeout_seconds: 0 is out of range 1..=600",
            "F: sip_media_applications[id=sma-ivr].webhook_secret: must start with \"whsec_\" (a Standard Webhooks secret)",
        ]
    );
    assert!(errs.iter().all(|e| !e.contains("change-me")));
    let two = with(
        sma,
        &format!("{sma}\nwebhook_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nwebhook_secret_env = \"X\""),
    );
    assert_errors(
        &two,
        &["F: sip_media_applications[id=sma-ivr].webhook_secret: set only one of webhook_secret, webhook_secret_file, webhook_secret_env"],
    );

    // From a file next to the configuration, with the defaults.
    let path = write(&with(
        sma,
        &format!("{sma}\nwebhook_secret_file = \"sma.key\""),
    ));
    let dir = path.parent().unwrap();
    std::fs::write(
        dir.join("sma.key"),
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
    )
    .unwrap();
    let c = trunkd_config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let key = c.resources.sip_media_applications()[0]
        .webhook_secret
        .as_ref()
        .expect("the key");
    assert_eq!(
        Some(key),
        trunkd_core::events::signing::WebhookKey::from_whsec(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        )
        .ok()
        .as_ref()
    );
    let a = &c.settings.applications;
    assert_eq!(a.response_timeout, std::time::Duration::from_secs(5));
    assert_eq!(a.max_actions, 10);
    assert_eq!(a.audio_cache_bytes, 64 << 20);
    assert_eq!(a.audio_max_file_bytes, 8 << 20);
    assert_eq!(a.outbound_ring_timeout, std::time::Duration::from_secs(60));
    assert_eq!(
        a.recording_directory,
        dir.join("var").join("sma-recordings")
    );
}

/// `[probing]` is off by default; on, every field is checked and a bad
/// reply pattern is named (docs/configuration.md).
#[test]
fn probing_is_off_by_default_and_checked_when_on() {
    let c = trunkd_config::load(&write(VALID)).unwrap();
    assert!(c.settings.routing.probing.is_none());
    let on = format!(
        "{VALID}\n[probing]\ninterval_seconds = 5\nfailure_threshold = 2\naccepted_replies = [\"2xx\", \"480\"]\n"
    );
    let c = trunkd_config::load(&write(&on)).unwrap();
    let p = c.settings.routing.probing.expect("on");
    assert_eq!(p.interval, std::time::Duration::from_secs(5));
    assert_eq!(p.timeout, std::time::Duration::from_secs(2));
    assert_eq!(
        (p.failure_threshold.get(), p.success_threshold.get()),
        (2, 2)
    );
    assert!(p.accepted.accepts(480) && p.accepted.accepts(204) && !p.accepted.accepts(404));
    let bad = format!(
        "{VALID}\n[probing]\ninterval_seconds = 1\ntimeout_ms = 5000\nsuccess_threshold = 0\naccepted_replies = [\"2xx\", \"1xx\"]\n"
    );
    assert_errors(
        &bad,
        &[
            "F: probing.timeout_ms: 5000 is longer than interval_seconds (1 s)",
            "F: probing.success_threshold: 0 is out of range 1..=100",
            "F: probing.accepted_replies: \"1xx\" is neither a reply class such as \"2xx\" nor a code from 200 to 699",
        ],
    );
}

/// `[admin] tokens`: a known role, the SHA-256 (never the token itself,
/// which is not echoed), unique names; a listener off loopback needs them.
#[test]
fn admin_tokens_are_checked_and_never_echoed() {
    let sha = "37b8d57153bffdf023160736edb4fcb922a1b6b6ce2dba953f4b571880757b47";
    let good = format!(
        "{VALID}\n[admin]\nlisten = \"0.0.0.0:9060\"\ntokens = [ {{ name = \"grafana\", role = \"read-only\", token_sha256 = \"{sha}\" }} ]\nnumber_restore_days = 3\n"
    );
    let c = trunkd_config::load(&write(&good)).unwrap();
    let a = &c.settings.admin;
    assert_eq!(a.tokens.len(), 1);
    assert_eq!(a.tokens[0].role, trunkd_config::AdminRole::ReadOnly);
    assert_eq!(a.number_restore, std::time::Duration::from_secs(3 * 86_400));
    assert!(a.open_metrics);
    let bad = format!(
        "{VALID}\n[admin]\nlisten = \"0.0.0.0:9060\"\ntokens = [ {{ name = \"a\", role = \"root\", token_sha256 = \"{sha}\" }}, {{ name = \"b\", role = \"admin\", token_sha256 = \"my-plain-token\" }} ]\n"
    );
    let errs = errors(&bad);
    assert_eq!(
        errs,
        [
            "F: admin.tokens[0].role: \"root\" is not one of read-only, operator, admin",
            "F: admin.tokens[1].token_sha256: must be the 64 hex digits of the token's SHA-256 (sha256sum), not the token",
            "F: admin.listen: 0.0.0.0:9060 is not a loopback address: an admin API reachable from the network needs tokens",
        ]
    );
    assert!(errs.iter().all(|e| !e.contains("my-plain-token")));
}

/// `[admin] status_sample_seconds`: the status page's sample interval,
/// a minute by default, 1 s at least (tests), an hour at most.
#[test]
fn the_status_page_samples_once_a_minute_unless_told() {
    let load = |extra: &str| {
        trunkd_config::load(&write(&format!("{VALID}\n[admin]\n{extra}")))
            .unwrap()
            .settings
            .admin
            .status_sample
    };
    assert_eq!(load(""), std::time::Duration::from_secs(60));
    assert_eq!(
        load("status_sample_seconds = 1\n"),
        std::time::Duration::from_secs(1)
    );
    assert_eq!(
        errors(&format!("{VALID}\n[admin]\nstatus_sample_seconds = 0\n")),
        ["F: admin.status_sample_seconds: 0 is out of range 1..=3600"]
    );
}

/// `[voice_connectors.streaming]` of vc-west with `keys` (one per line).
fn with_streaming(keys: &str) -> String {
    let vc = "[voice_connectors.origination]\nroutes = [ { host = \"127.0.0.1\", port = 5093 } ]";
    with(
        vc,
        &format!("{vc}\n\n[voice_connectors.streaming]\ndisabled = false\nsinks = [ {{ type = \"websocket\", url = \"ws://127.0.0.1:8765/audio\" }} ]\n{keys}"),
    )
}

#[test]
fn streaming_layout_and_reconnect_defaults_and_overrides() {
    let read = |text: &str| {
        let path = write(text);
        let config = trunkd_config::load(&path).unwrap();
        config
            .resources
            .voice_connector("vc-west")
            .unwrap()
            .streaming
            .clone()
    };
    let s = read(&with_streaming(""));
    assert_eq!(s.channels, trunkd_core::StreamChannels::PerLeg);
    assert_eq!(s.reconnect, trunkd_core::StreamReconnect::default());
    assert_eq!(s.reconnect.max_attempts, 5);
    assert_eq!(s.queue_frames, 250);
    let s = read(&with_streaming(
        "channels = \"stereo\"\nmax_reconnects = 0\nreconnect_initial_ms = 50\nreconnect_max_ms = 400\nqueue_frames = 20",
    ));
    assert_eq!(s.channels, trunkd_core::StreamChannels::Stereo);
    assert_eq!(
        s.reconnect,
        trunkd_core::StreamReconnect {
            max_attempts: 0,
            initial: std::time::Duration::from_millis(50),
            max: std::time::Duration::from_millis(400),
        }
    );
    assert_eq!(s.queue_frames, 20);
}

#[test]
fn streaming_layout_and_reconnect_errors_name_the_field() {
    assert_errors(
        &with_streaming("channels = \"mono\""),
        &["F: voice_connectors[id=vc-west].streaming.channels: \"mono\" is not one of per_leg, stereo"],
    );
    assert_errors(
        &with_streaming("max_reconnects = 101\nqueue_frames = 5"),
        &[
            "F: voice_connectors[id=vc-west].streaming.max_reconnects: 101 is out of range 0..=100",
            "F: voice_connectors[id=vc-west].streaming.queue_frames: 5 is out of range 10..=15000",
        ],
    );
    assert_errors(
        &with_streaming("reconnect_initial_ms = 1000\nreconnect_max_ms = 500"),
        &["F: voice_connectors[id=vc-west].streaming.reconnect_max_ms: 500 is below reconnect_initial_ms (1000)"],
    );
}

/// RFC 3263: a host name without a port is looked up with SRV (and NAPTR
/// when no protocol is given either); a port keeps A/AAAA only.
#[test]
fn route_dns_lookup_follows_port_and_protocol() {
    use trunkd_core::routing::rfc3263::DnsLookup;
    let lookup = |route: &str| {
        let text = with("{ host = \"127.0.0.1\", port = 5093 }", route);
        assert_errors(&text, &[]);
        let c = trunkd_config::load(&write(&text)).unwrap();
        let r = &c
            .resources
            .voice_connector("vc-west")
            .unwrap()
            .origination
            .routes[0];
        (r.dns, r.port.get(), r.protocol)
    };
    use trunkd_core::Transport::{Tcp, Tls, Udp};
    assert_eq!(
        lookup("{ host = \"127.0.0.1\", port = 5093 }"),
        (DnsLookup::Address, 5093, Udp)
    );
    assert_eq!(
        lookup("{ host = \"127.0.0.1\" }"),
        (DnsLookup::Address, 5060, Udp)
    );
    assert_eq!(
        lookup("{ host = \"pbx.example.com\", port = 5093 }"),
        (DnsLookup::Address, 5093, Udp)
    );
    assert_eq!(
        lookup("{ host = \"pbx.example.com\" }"),
        (DnsLookup::Naptr, 5060, Udp)
    );
    assert_eq!(
        lookup("{ host = \"pbx.example.com\", protocol = \"TCP\" }"),
        (DnsLookup::Srv, 5060, Tcp)
    );
    assert_eq!(
        lookup("{ host = \"pbx.example.com\", protocol = \"TLS\" }"),
        (DnsLookup::Srv, 5061, Tls)
    );
}

#[test]
fn routing_dns_servers_are_addresses() {
    let text = with(
        "[sip]",
        "[routing]\ndns_servers = [\"127.0.0.1:5353\", \"::1\", \"dns.example\"]\n\n[sip]",
    );
    assert_errors(&text, &[
        "F: routing.dns_servers[2]: \"dns.example\" is not an IP address or ip:port (e.g. \"127.0.0.1:53\")",
    ]);
    let ok = with(
        "[sip]",
        "[routing]\ndns_servers = [\"127.0.0.1:5353\", \"::1\"]\n\n[sip]",
    );
    let c = trunkd_config::load(&write(&ok)).unwrap();
    assert_eq!(
        c.settings.routing.dns_servers,
        vec![
            "127.0.0.1:5353".parse().unwrap(),
            "[::1]:53".parse().unwrap()
        ]
    );
}

/// `[hep]`: off by default; a collector address, capture id and password
/// when on; only UDP is offered.
#[test]
fn hep_defaults_values_and_errors() {
    let c = trunkd_config::load(&write(VALID)).unwrap();
    assert_eq!(
        c.settings.hep,
        trunkd_config::HepSettings {
            enabled: false,
            collector: "127.0.0.1:9060".parse().unwrap(),
            capture_id: 0,
            password: None,
        }
    );
    let text = format!("[hep]\nenabled = true\ncollector = \"[::1]:9061\"\ncapture_id = 4294967295\npassword = \"pw\"\ntransport = \"udp\"\n{VALID}");
    let c = trunkd_config::load(&write(&text)).unwrap();
    assert_eq!(
        c.settings.hep,
        trunkd_config::HepSettings {
            enabled: true,
            collector: "[::1]:9061".parse().unwrap(),
            capture_id: u32::MAX,
            password: Some("pw".into()),
        }
    );
    assert_errors(
        &format!("[hep]\ncollector = \"nowhere\"\ncapture_id = -1\ntransport = \"tcp\"\n{VALID}"),
        &[
            "F: hep.collector: invalid socket address syntax",
            "F: hep.transport: \"tcp\" is not one of udp",
            "F: hep.capture_id: -1 is out of range 0..=4294967295",
        ],
    );
}

#[test]
fn media_relay_threads_default_to_one_per_cpu_and_are_bounded() {
    let c = trunkd_config::load(&write(VALID)).unwrap();
    // None: the daemon starts one relay thread per CPU.
    assert_eq!(c.settings.media.relay_threads, None);
    let c = trunkd_config::load(&write(&format!("[media]\nrelay_threads = 3\n{VALID}"))).unwrap();
    assert_eq!(
        c.settings.media.relay_threads,
        std::num::NonZeroUsize::new(3)
    );
    let c = trunkd_config::load(&write(&format!("[media]\nrelay_threads = 0\n{VALID}"))).unwrap();
    assert_eq!(c.settings.media.relay_threads, None);
    assert_errors(
        &format!("[media]\nrelay_threads = 65\n{VALID}"),
        &["F: media.relay_threads: 65 is out of range 0..=64"],
    );
}

#[test]
fn media_relays_per_thread_default_to_the_media_crates_figure_and_are_bounded() {
    let c = trunkd_config::load(&write(VALID)).unwrap();
    assert_eq!(c.settings.media.relays_per_thread, None);
    let c = trunkd_config::load(&write(&format!(
        "[media]\nrelays_per_thread = 200\n{VALID}"
    )))
    .unwrap();
    assert_eq!(
        c.settings.media.relays_per_thread,
        std::num::NonZeroUsize::new(200)
    );
    let c =
        trunkd_config::load(&write(&format!("[media]\nrelays_per_thread = 0\n{VALID}"))).unwrap();
    assert_eq!(c.settings.media.relays_per_thread, None);
    assert_errors(
        &format!("[media]\nrelays_per_thread = -1\n{VALID}"),
        &["F: media.relays_per_thread: -1 is out of range 0..=100000"],
    );
}

#[test]
fn sip_threads_default_to_half_the_cpus_and_are_bounded() {
    let c = trunkd_config::load(&write(VALID)).unwrap();
    // None: the daemon takes half the CPUs, at least one.
    assert_eq!(c.settings.sip.threads, None);
    let c = trunkd_config::load(&write(&VALID.replacen("[sip]", "[sip]\nthreads = 2", 1))).unwrap();
    assert_eq!(c.settings.sip.threads, std::num::NonZeroUsize::new(2));
    let c = trunkd_config::load(&write(&VALID.replacen("[sip]", "[sip]\nthreads = 0", 1))).unwrap();
    assert_eq!(c.settings.sip.threads, None);
    assert_errors(
        &VALID.replacen("[sip]", "[sip]\nthreads = 65", 1),
        &["F: sip.threads: 65 is out of range 0..=64"],
    );
}

#[test]
fn sip_udp_receive_buffer_defaults_to_4_mib_and_0_keeps_the_kernels() {
    let c = trunkd_config::load(&write(VALID)).unwrap();
    assert_eq!(c.settings.sip.udp_receive_buffer_bytes, 4 << 20);
    let c = trunkd_config::load(&write(&VALID.replacen(
        "[sip]",
        "[sip]\nudp_receive_buffer_bytes = 0",
        1,
    )))
    .unwrap();
    assert_eq!(c.settings.sip.udp_receive_buffer_bytes, 0);
    assert_errors(
        &VALID.replacen("[sip]", "[sip]\nudp_receive_buffer_bytes = 2147483648", 1),
        &["F: sip.udp_receive_buffer_bytes: 2147483648 is out of range 0..=1073741824"],
    );
}
