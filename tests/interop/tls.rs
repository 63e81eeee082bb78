//! TLS signalling (SPEC §2.4, §8): trunkd's TLS listener against a rustls
//! client, `openssl s_client` and Kamailio's TLS module; certificate reload
//! on SIGHUP; require_encryption and mutual TLS in admission. Certificates
//! are made by each test (rcgen) in its temp dir: a test CA, trunkd's
//! certificate for 127.0.0.1, Kamailio's for 127.0.0.2, a client's.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConnection, StreamOwned};

use crate::calls::{assert_ok, host, pbx_calls, records, Lab, CARRIER, PBX, ROUTES};
use crate::support::*;

/// A test CA that issues leaf certificates.
pub(crate) struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    pub(crate) fn new() -> Ca {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "trunkd test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf for `names` (IP literals become IP SANs): (cert PEM, key PEM).
    pub(crate) fn issue(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let p = rcgen::CertificateParams::new(names).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A leaf from `params` (a chosen validity, say): (cert PEM, key PEM).
    pub(crate) fn sign(&self, params: rcgen::CertificateParams) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub(crate) fn write(&self, dir: &Path) -> PathBuf {
        let p = dir.join("ca.pem");
        std::fs::write(&p, self.cert.pem()).unwrap();
        p
    }
}

/// Files of a leaf certificate in `dir`: `<name>.pem`, `<name>.key`.
pub(crate) fn write_leaf(dir: &Path, name: &str, leaf: &(String, String)) -> (PathBuf, PathBuf) {
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, &leaf.0).unwrap();
    std::fs::write(&k, &leaf.1).unwrap();
    (c, k)
}

pub(crate) fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// The test's own directory for certificates (trunkd's directory is made
/// by `Daemon::start`, after the config that names these files).
pub(crate) fn cert_dir(tag: &str) -> PathBuf {
    temp_dir(&format!("tls-{tag}"))
}

/// Lab's config with a TLS listener on `tls_port` and `[tls]` keys.
fn tls_config(lab: &Lab<'_>, ports: Ports, tls_port: u16, tls: &str) -> String {
    let text = lab.config(ports).replacen(
        "[sip]\n",
        &format!("[tls]\n{tls}\n\n[sip]\ntls = [\"127.0.0.1:{tls_port}\"]\n"),
        1,
    );
    assert!(text.contains("tls = ["), "{text}");
    text
}

/// The daemon sections of a lab with a UDP and a TLS listener on loopback
/// and `[tls]` naming these files; resources follow.
pub(crate) fn tls_daemon_sections(
    ports: Ports,
    tls_port: u16,
    cert: &Path,
    key: &Path,
    ca: &Path,
) -> String {
    format!(
        r#"
[daemon]
state_dir = "var"
[tls]
cert_file = {cert:?}
key_file = {key:?}
ca_file = {ca:?}
[sip]
udp = ["127.0.0.1:{sip}"]
tcp = []
tls = ["127.0.0.1:{tls_port}"]
[admin]
listen = "127.0.0.1:{admin}"
[logging]
level = "debug"
"#,
        sip = ports.sip,
        admin = ports.admin,
    )
}

/// A carrier host nobody answers on: calls in these tests end at admission.
const DEAD_CARRIER: &str = "{ host = \"127.0.0.2\", port = 9 }";

/// trunkd with a TLS listener and `[tls]` keys `tls`, `top` before the
/// lab (e.g. a `[security]` section), calls ending at admission; returns it
/// and its TLS port.
fn tls_listener_daemon(tag: &str, top: &str, tls: &str) -> (Daemon, u16) {
    let ports = Ports::pick();
    let tls_port = free_port();
    let lab = Lab {
        hosts: DEAD_CARRIER,
        top,
        ..Default::default()
    };
    let d = Daemon::start(tag, ports, &tls_config(&lab, ports, tls_port, tls));
    (d, tls_port)
}

type Client = StreamOwned<ClientConnection, TcpStream>;

/// A rustls client to trunkd's TLS listener from `src` (a 127.0.0.x
/// address, so admission sees the right customer), trusting `ca_pem`,
/// presenting `identity` when given.
fn tls_connect(
    src: &str,
    dest: SocketAddr,
    ca_pem: &str,
    identity: Option<&(String, String)>,
) -> Client {
    tls_connect_as(
        src,
        dest,
        ca_pem,
        identity,
        ServerName::IpAddress(dest.ip().into()),
    )
}

/// [`tls_connect`] asking for (SNI) and verifying `name`.
fn tls_connect_as(
    src: &str,
    dest: SocketAddr,
    ca_pem: &str,
    identity: Option<&(String, String)>,
    name: ServerName<'static>,
) -> Client {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(ca_pem)).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((c, k)) => b
            .with_client_auth_cert(
                vec![der(c)],
                PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::new(src.parse().unwrap(), 0).into())
        .unwrap();
    sock.connect_timeout(&dest.into(), Duration::from_secs(2))
        .unwrap();
    let tcp: TcpStream = sock.into();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut s = StreamOwned::new(conn, tcp);
    // Complete the handshake now, so that failures show here.
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).expect("TLS handshake");
    }
    s
}

/// The certificate trunkd served on `c`.
fn served(c: &Client) -> CertificateDer<'static> {
    c.conn.peer_certificates().unwrap()[0].clone().into_owned()
}

/// Sends `msg` and reads one whole response (head + Content-Length body).
fn exchange(c: &mut Client, msg: &str) -> String {
    c.write_all(msg.as_bytes()).unwrap();
    c.flush().unwrap();
    read_response(c)
}

fn read_response(c: &mut Client) -> String {
    read_message(c)
}

/// Reads one whole SIP message (head + Content-Length body) off a stream.
pub(crate) fn read_message<S: Read>(c: &mut S) -> String {
    let mut buf = Vec::new();
    // One byte at a time: a second message in the same TLS record must
    // stay for the next call (rustls buffers the plaintext; this is cheap).
    let mut chunk = [0u8; 1];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    (n.eq_ignore_ascii_case("content-length") || n == "l")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return String::from_utf8_lossy(&buf[..end + 4 + len]).into_owned();
            }
        }
        let n = c.read(&mut chunk).expect("read a SIP message over TLS");
        assert!(n > 0, "connection closed; got {text:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn options(c: &Client, n: u32) -> String {
    let me = c.sock.local_addr().unwrap();
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS {me};branch=z9hG4bKtls{n}\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@{ip}>;tag=t{n}\r\nTo: <sip:127.0.0.1>\r\nCall-ID: tls-options-{n}@{ip}\r\n\
         CSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n",
        ip = me.ip()
    )
}

/// A termination INVITE over TLS from the PBX, with an RTP/AVP (not SRTP)
/// offer.
fn invite(c: &Client, n: u32) -> String {
    let me = c.sock.local_addr().unwrap();
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        ip = me.ip()
    );
    format!(
        "INVITE sip:+12065550199@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS {me};branch=z9hG4bKinv{n}\r\nMax-Forwards: 70\r\n\
         From: <sip:+12065550100@{ip}>;tag=i{n}\r\nTo: <sip:+12065550199@127.0.0.1>\r\nCall-ID: tls-invite-{n}@{ip}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:pbx@{me};transport=tls>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {len}\r\n\r\n{sdp}",
        ip = me.ip(),
        len = sdp.len()
    )
}

/// Sends `msg` and returns the first final (non-1xx) response.
fn final_response(c: &mut Client, msg: &str) -> String {
    let mut r = exchange(c, msg);
    while status_line(&r).starts_with("SIP/2.0 1") {
        r = read_response(c);
    }
    r
}

fn status_line(resp: &str) -> &str {
    resp.lines().next().unwrap_or_default()
}

#[test]
fn options_over_tls_and_a_reloaded_certificate_leaves_open_connections_alone() {
    let certs = cert_dir("reload");
    let ca = Ca::new();
    let first = ca.issue(&["127.0.0.1"]);
    let (cert, key) = write_leaf(&certs, "server", &first);
    let tls = format!("cert_file = {cert:?}\nkey_file = {key:?}");
    let (d, tls_port) = tls_listener_daemon("tls-reload", "", &tls);
    let dest = SocketAddr::from(([127, 0, 0, 1], tls_port));

    let mut old = tls_connect(PBX, dest, &ca.cert.pem(), None);
    assert_eq!(served(&old), der(&first.0));
    let m = options(&old, 1);
    let r = exchange(&mut old, &m);
    assert!(status_line(&r).starts_with("SIP/2.0 200"), "{r}");
    assert!(r.contains("Via: SIP/2.0/TLS"), "{r}");
    d.wait_metric("sip_connections{transport=\"tls\"}", 1.0);

    // A renewed certificate: the files change, SIGHUP, new handshakes get it.
    let second = ca.issue(&["127.0.0.1"]);
    write_leaf(&certs, "server", &second);
    d.signal(libc::SIGHUP);
    d.wait_metric("config_reloads_total{result=\"success\"}", 1.0);
    let mut new = tls_connect(PBX, dest, &ca.cert.pem(), None);
    assert_eq!(served(&new), der(&second.0));
    let m = options(&new, 2);
    let r = exchange(&mut new, &m);
    assert!(status_line(&r).starts_with("SIP/2.0 200"), "{r}");
    // The connection from before the reload still works.
    let m = options(&old, 3);
    let r = exchange(&mut old, &m);
    assert!(status_line(&r).starts_with("SIP/2.0 200"), "{r}");

    // A broken certificate file fails the reload and keeps the good one.
    std::fs::write(&cert, "not a certificate").unwrap();
    d.signal(libc::SIGHUP);
    d.wait_metric("config_reloads_total{result=\"failure\"}", 1.0);
    assert!(d.log().contains("tls.cert_file"), "{}", d.log());
    let again = tls_connect(PBX, dest, &ca.cert.pem(), None);
    assert_eq!(served(&again), der(&second.0));
}

/// Runs `openssl s_client` for one protocol version; whether the handshake
/// succeeded.
fn s_client(port: u16, version: &str, ca: &Path) -> (bool, String) {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &format!("127.0.0.1:{port}"),
        version,
    ])
    .arg("-CAfile")
    .arg(ca)
    .args(["-verify_return_error"]);
    if version == "-tls1" || version == "-tls1_1" {
        // Debian's default SECLEVEL refuses TLS 1.0/1.1 in the client
        // itself; level 0 lets it try, so a refusal is trunkd's.
        cmd.args(["-cipher", "DEFAULT@SECLEVEL=0"]);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("openssl is installed (scripts/test installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn only_tls_1_2_and_1_3_are_accepted() {
    let certs = cert_dir("versions");
    let ca = Ca::new();
    let ca_file = ca.write(&certs);
    let (cert, key) = write_leaf(&certs, "server", &ca.issue(&["127.0.0.1"]));
    let tls = format!("cert_file = {cert:?}\nkey_file = {key:?}");
    let (d, tls_port) = tls_listener_daemon("tls-versions", "", &tls);
    for v in ["-tls1", "-tls1_1"] {
        let (ok, text) = s_client(tls_port, v, &ca_file);
        assert!(!ok, "{v} must be refused:\n{text}");
    }
    // Both refusals were trunkd's: it counted two failed handshakes.
    d.wait_metric(
        "sip_tls_handshake_failures_total{direction=\"inbound\"}",
        2.0,
    );
    for (v, proto) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let (ok, text) = s_client(tls_port, v, &ca_file);
        assert!(ok, "{v} must be accepted:\n{text}");
        assert!(text.contains(proto), "{v}:\n{text}");
        assert!(text.contains("Verify return code: 0 (ok)"), "{v}:\n{text}");
    }
}

#[test]
fn require_encryption_refuses_plain_udp_and_tls_without_srtp_with_488() {
    let certs = cert_dir("encrypt");
    let ca = Ca::new();
    let (cert, key) = write_leaf(&certs, "server", &ca.issue(&["127.0.0.1"]));
    let ports = Ports::pick();
    let tls_port = free_port();
    let tls = format!("cert_file = {cert:?}\nkey_file = {key:?}");
    let lab = Lab {
        hosts: &host(CARRIER, 9, ""),
        ..Default::default()
    };
    let text = tls_config(&lab, ports, tls_port, &tls).replacen(
        "id = \"vc-east\"\n",
        "id = \"vc-east\"\nrequire_encryption = true\n",
        1,
    );
    // require_encryption forbids non-TLS origination routes.
    let text = text.replacen(
        "host = \"127.0.0.4\", port = 9 }",
        "host = \"127.0.0.4\", port = 9, protocol = \"TLS\" }",
        1,
    );
    let d = Daemon::start("tls-encrypt", ports, &text);

    // Plain UDP: SIPp's 488 scenario.
    let out = pbx_calls("uac_expect_488.xml", &d, &[]);
    assert_ok(&out, "plain UDP INVITE to a require_encryption VC");

    // TLS, but an RTP/AVP offer.
    let mut c = tls_connect(
        PBX,
        SocketAddr::from(([127, 0, 0, 1], tls_port)),
        &ca.cert.pem(),
        None,
    );
    let m = invite(&c, 1);
    let r = final_response(&mut c, &m);
    assert_eq!(status_line(&r), "SIP/2.0 488 Encryption Required", "{r}");
    d.wait_metric(
        "voice_connector_admission_rejections_total{voice_connector_id=\"vc-east\",region=\"local\",reason=\"encryption_required\"}",
        2.0,
    );
}

#[test]
fn a_voice_connector_requiring_a_client_certificate_refuses_a_client_without_one() {
    let certs = cert_dir("mtls");
    let ca = Ca::new();
    let ca_file = ca.write(&certs);
    let (cert, key) = write_leaf(&certs, "server", &ca.issue(&["127.0.0.1"]));
    let ports = Ports::pick();
    let tls_port = free_port();
    let tls = format!("cert_file = {cert:?}\nkey_file = {key:?}\nclient_ca_file = {ca_file:?}");
    // The carrier refuses every call: a 486 relayed back proves the call
    // passed admission and was routed.
    let carrier = free_port_on(CARRIER);
    let _uas = SippBg::uas("uas_reject_486.xml", CARRIER, carrier, &["-m", "1"]);
    let hosts = host(CARRIER, carrier, "");
    let lab = Lab {
        hosts: &hosts,
        east_termination: "require_client_certificate = true",
        ..Default::default()
    };
    let d = Daemon::start("tls-mtls", ports, &tls_config(&lab, ports, tls_port, &tls));
    let dest = SocketAddr::from(([127, 0, 0, 1], tls_port));

    // Asked, not required: the handshake succeeds without a certificate,
    // and admission refuses the call.
    let mut anon = tls_connect(PBX, dest, &ca.cert.pem(), None);
    let m = invite(&anon, 1);
    let r = final_response(&mut anon, &m);
    assert_eq!(
        status_line(&r),
        "SIP/2.0 403 Client Certificate Required",
        "{r}"
    );
    d.wait_metric(
        "voice_connector_admission_rejections_total{voice_connector_id=\"vc-east\",region=\"local\",reason=\"client_certificate\"}",
        1.0,
    );

    // With a certificate from the client CA, the call is admitted and
    // routed to the carrier.
    let pbx_cert = ca.issue(&["pbx.example"]);
    let mut known = tls_connect(PBX, dest, &ca.cert.pem(), Some(&pbx_cert));
    let m = invite(&known, 2);
    let r = final_response(&mut known, &m);
    assert!(
        status_line(&r).starts_with("SIP/2.0 486"),
        "{r}\n{}",
        d.log()
    );
}

/// A Kamailio process with its TLS module, killed by its PID on drop.
struct Kamailio {
    child: Option<Child>,
    log: PathBuf,
}

impl Kamailio {
    /// Starts Kamailio on `dir/kamailio.cfg` (checked with `-c` first) and
    /// waits until its TLS port accepts connections.
    fn start(dir: &Path, tls: SocketAddr) -> Kamailio {
        let cfg = dir.join("kamailio.cfg");
        let check = Command::new("kamailio")
            .args(["-c", "-f"])
            .arg(&cfg)
            .output()
            .expect("kamailio is installed (scripts/test installs it)");
        assert!(
            check.status.success(),
            "kamailio -c: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let log = dir.join("kamailio.log");
        let child = Command::new("kamailio")
            .args(["-DD", "-E", "-n", "1", "-f"])
            .arg(&cfg)
            .arg("-w")
            .arg(dir)
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("kamailio is installed");
        let k = Kamailio {
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&tls, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "kamailio did not start:\n{}",
                k.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        k
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM lets it take its children down; then SIGKILL by PID.
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Kamailio as a TLS front at 127.0.0.2: whatever reaches it over TLS goes
/// on over UDP to `behind` (the carrier's SIPp); whatever reaches it over
/// UDP goes on over TLS to trunkd's TLS listener. It record-routes, so
/// in-dialog requests take the same path.
fn kamailio_cfg(dir: &Path, udp: u16, tls: u16, behind: SocketAddr, trunkd_tls: u16, ca: &Path) {
    let (cert, key) = (dir.join("kamailio.pem"), dir.join("kamailio.key"));
    let tls_cfg = dir.join("tls.cfg");
    std::fs::write(
        &tls_cfg,
        format!(
            "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n\
             private_key = {key}\ncertificate = {cert}\n\n\
             [client:default]\nmethod = TLSv1.2+\nverify_certificate = yes\nrequire_certificate = yes\n\
             ca_list = {ca}\n",
            key = key.display(),
            cert = cert.display(),
            ca = ca.display()
        ),
    )
    .unwrap();
    let cfg = format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=1
listen=udp:127.0.0.2:{udp}
listen=tls:127.0.0.2:{tls}
enable_tls=yes
auto_aliases=no
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "tls.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "pv.so"
modparam("tls", "config", "{tls_cfg}")
modparam("rr", "enable_double_rr", 1)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        # Every in-dialog request must come back through here with a
        # Route: trunkd's answers echo the Record-Route (RFC 3261
        # §12.1.1). One without is an error, so the test would see it.
        sl_send_reply("404", "No Route");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{ t_relay(); }}
        exit;
    }}
    if (is_method("INVITE") && !has_totag()) {{
        record_route();
    }}
    if (proto == TLS) {{
        $du = "sip:{behind};transport=udp";
    }} else {{
        $du = "sip:127.0.0.1:{trunkd_tls};transport=tls";
        # Connect from the carrier's address: trunkd admits origination by
        # source address.
        force_send_socket(tls:127.0.0.2:{tls});
    }}
    if (!t_relay()) {{
        sl_reply_error();
    }}
    exit;
}}
"#,
        tls_cfg = tls_cfg.display(),
    );
    std::fs::write(dir.join("kamailio.cfg"), cfg).unwrap();
}

/// Both directions through Kamailio's TLS module, one trunkd:
/// (a) termination: PBX (SIPp, UDP) → trunkd → TLS carrier host = Kamailio
///     → UDP → carrier SIPp; trunkd verifies Kamailio's certificate
///     against `tls.ca_file`;
/// (b) origination: carrier SIPp (UDP) → Kamailio → TLS → trunkd's TLS
///     listener (Kamailio verifies trunkd's certificate) → customer route
///     SIPp (UDP).
#[test]
fn calls_through_kamailio_as_a_tls_front_in_both_directions() {
    let dir = cert_dir("kamailio");
    let ca = Ca::new();
    let ca_file = ca.write(&dir);
    let (cert, key) = write_leaf(&dir, "server", &ca.issue(&["127.0.0.1"]));
    write_leaf(&dir, "kamailio", &ca.issue(&["127.0.0.2"]));
    let ports = Ports::pick();
    let trunkd_tls = free_port();
    let (k_udp, k_tls) = (free_port_on(CARRIER), free_port_on(CARRIER));
    // The carrier's own SIP server, behind Kamailio.
    const BEHIND: &str = "127.0.0.6";
    let behind = free_port_on(BEHIND);
    let route = free_port_on(ROUTES);
    kamailio_cfg(
        &dir,
        k_udp,
        k_tls,
        SocketAddr::new(BEHIND.parse().unwrap(), behind),
        trunkd_tls,
        &ca_file,
    );
    let _kamailio = Kamailio::start(&dir, SocketAddr::new(CARRIER.parse().unwrap(), k_tls));

    let hosts = host(CARRIER, k_tls, ", protocol = \"TLS\"");
    let east_routes = host(ROUTES, route, "");
    let lab = Lab {
        hosts: &hosts,
        east_routes: &east_routes,
        ..Default::default()
    };
    let tls = format!("cert_file = {cert:?}\nkey_file = {key:?}\nca_file = {ca_file:?}");
    let d = Daemon::start(
        "tls-kamailio",
        ports,
        &tls_config(&lab, ports, trunkd_tls, &tls),
    );

    // (a) termination.
    let mut carrier = SippBg::uas("uas_answer.xml", BEHIND, behind, &["-m", "1"]);
    let out = pbx_calls("uac_call.xml", &d, &["-d", "200"]);
    let (ok, text) = carrier.wait(Duration::from_secs(10));
    assert!(
        out.status.success() && ok,
        "termination through Kamailio: {}\ncarrier: {text}\nkamailio:\n{}\ntrunkd:\n{}",
        out_text(&out),
        _kamailio.log(),
        d.log()
    );
    let cdrs = wait_cdrs(&records(&d), 1);
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    assert_eq!(cdrs[0]["Status"], "Completed");
    assert_eq!(cdrs[0]["Direction"], "Outbound");

    // (b) origination.
    let mut customer = SippBg::uas("uas_answer.xml", ROUTES, route, &["-m", "1"]);
    let out = sipp_uac(
        "uac_call.xml",
        CARRIER,
        SocketAddr::new(CARRIER.parse().unwrap(), k_udp),
        &[
            "-s",
            "+12065550100",
            "-key",
            "caller",
            "+14155550123",
            "-m",
            "1",
            "-d",
            "200",
        ],
    );
    let (ok, text) = customer.wait(Duration::from_secs(10));
    assert!(
        out.status.success() && ok,
        "origination through Kamailio: {}\ncustomer: {text}\nkamailio:\n{}\ntrunkd:\n{}",
        out_text(&out),
        _kamailio.log(),
        d.log()
    );
    let cdrs = wait_cdrs(&records(&d), 2);
    assert!(
        cdrs.iter()
            .any(|c| c["Direction"] == "Inbound" && c["Status"] == "Completed"),
        "{cdrs:?}"
    );
    // trunkd verified Kamailio's certificate against tls.ca_file.
    assert_eq!(
        d.metric("sip_tls_handshake_failures_total{direction=\"outbound\"}"),
        Some(0.0)
    );
}

/// The stream caps of SPEC §8 hold for TLS: the per-source connection cap
/// refuses a third connection, and a client that never starts its
/// handshake is dropped after `tls.handshake_timeout_seconds`, freeing its
/// slot.
#[test]
fn tls_connections_are_capped_per_source_and_a_silent_client_is_dropped() {
    let certs = cert_dir("caps");
    let ca = Ca::new();
    let (cert, key) = write_leaf(&certs, "server", &ca.issue(&["127.0.0.1"]));
    let tls = format!("cert_file = {cert:?}\nkey_file = {key:?}\nhandshake_timeout_seconds = 1");
    let (d, tls_port) = tls_listener_daemon(
        "tls-caps",
        "[security]\nmax_tcp_connections_per_source = 2\n",
        &tls,
    );
    let dest = SocketAddr::from(([127, 0, 0, 1], tls_port));
    let silent: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(dest).unwrap()).collect();
    let mut third = TcpStream::connect(dest).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Closed by trunkd without a byte: EOF (or a reset).
    assert!(matches!(third.read(&mut [0u8; 1]), Ok(0) | Err(_)));
    d.wait_metric("sip_connections_refused_total{transport=\"tls\"}", 1.0);
    // The two silent ones time out, counted as failed handshakes…
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let started = Instant::now();
        assert!(matches!(s.read(&mut [0u8; 1]), Ok(0) | Err(_)));
        assert!(started.elapsed() < Duration::from_secs(4));
    }
    d.wait_metric(
        "sip_tls_handshake_failures_total{direction=\"inbound\"}",
        2.0,
    );
    // …and their slots are free again.
    let mut c = tls_connect("127.0.0.1", dest, &ca.cert.pem(), None);
    let m = options(&c, 1);
    let r = exchange(&mut c, &m);
    assert!(status_line(&r).starts_with("SIP/2.0 200"), "{r}");
}

/// A carrier's SIP server over TLS in a thread: accepts one connection,
/// tells `on_handshake` the SNI it got (`None`: the handshake failed), then
/// hands every request it reads to `on_request` (which returns what to
/// send back, if anything), until the connection closes or `limit` ends.
pub(crate) fn tls_uas(
    listener: std::net::TcpListener,
    cert: (String, String),
    limit: Duration,
    on_handshake: impl FnOnce(Option<String>) + Send + 'static,
    mut on_request: impl FnMut(&crate::ua::Msg) -> Option<String> + Send + 'static,
) -> std::thread::JoinHandle<()> {
    use rustls::pki_types::pem::PemObject;
    std::thread::spawn(move || {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![der(&cert.0)],
                rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.1.as_bytes()).unwrap(),
            )
            .unwrap();
        let (tcp, from) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(limit)).unwrap();
        let conn = rustls::ServerConnection::new(std::sync::Arc::new(config)).unwrap();
        let mut s = rustls::StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            if s.conn.complete_io(&mut s.sock).is_err() {
                return on_handshake(None);
            }
        }
        on_handshake(s.conn.server_name().map(str::to_owned));
        loop {
            let text = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                read_message(&mut s)
            })) {
                Ok(t) => t,
                Err(_) => return,
            };
            let msg = crate::ua::Msg { text, from };
            if let Some(reply) = on_request(&msg) {
                use std::io::Write;
                s.write_all(reply.as_bytes()).unwrap();
                s.flush().unwrap();
            }
        }
    })
}

/// A carrier host named by IP with `tls_server_name`: trunkd sends that
/// name as SNI and accepts a certificate that names only it.
#[test]
fn a_tls_server_name_is_sent_as_sni_and_verified() {
    use std::sync::mpsc;
    let certs = cert_dir("sni");
    let ca = Ca::new();
    let ca_file = ca.write(&certs);
    let (cert, key) = write_leaf(&certs, "server", &ca.issue(&["127.0.0.1"]));
    let listener = std::net::TcpListener::bind((CARRIER, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sni_tx, sni) = mpsc::channel();
    let (inv_tx, invites) = mpsc::channel();
    let _carrier = tls_uas(
        listener,
        ca.issue(&["sbc.carrier.example"]),
        Duration::from_secs(10),
        move |name| sni_tx.send(name).unwrap(),
        move |m| {
            if !m.first_line().starts_with("INVITE ") {
                return None;
            }
            inv_tx.send(()).unwrap();
            Some(crate::ua::response_to(
                m,
                "486 Busy Here",
                "c",
                "<sip:c@127.0.0.2>",
                None,
            ))
        },
    );
    let hosts = host(
        CARRIER,
        port,
        ", protocol = \"TLS\", tls_server_name = \"sbc.carrier.example\"",
    );
    let lab = Lab {
        hosts: &hosts,
        ..Default::default()
    };
    let ports = Ports::pick();
    let tls = format!("cert_file = {cert:?}\nkey_file = {key:?}\nca_file = {ca_file:?}");
    let d = Daemon::start(
        "tls-sni",
        ports,
        &tls_config(&lab, ports, free_port(), &tls),
    );
    let out = pbx_calls("uac_call.xml", &d, &[]);
    let name = sni.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(name.as_deref(), Some("sbc.carrier.example"), "{}", d.log());
    invites
        .recv_timeout(Duration::from_secs(5))
        .expect("the INVITE crossed the verified connection");
    assert!(!out.status.success(), "the carrier said 486");
    assert_eq!(
        d.metric("sip_tls_handshake_failures_total{direction=\"outbound\"}"),
        Some(0.0)
    );
}

/// A carrier host given by DNS name (`localhost`, from /etc/hosts):
/// trunkd resolves it off the call path, connects to its address, and
/// sends and verifies the name (SNI) — no `tls_server_name` needed.
#[test]
fn a_carrier_host_name_is_resolved_and_used_for_sni() {
    use std::sync::mpsc;
    let certs = cert_dir("dns-name");
    let ca = Ca::new();
    let ca_file = ca.write(&certs);
    let (cert, key) = write_leaf(&certs, "server", &ca.issue(&["127.0.0.1"]));
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sni_tx, sni) = mpsc::channel();
    let (inv_tx, invites) = mpsc::channel();
    let _carrier = tls_uas(
        listener,
        ca.issue(&["localhost"]),
        Duration::from_secs(10),
        move |name| sni_tx.send(name).unwrap(),
        move |m| {
            if !m.first_line().starts_with("INVITE ") {
                return None;
            }
            inv_tx.send(m.first_line().to_owned()).unwrap();
            Some(crate::ua::response_to(
                m,
                "486 Busy Here",
                "c",
                "<sip:c@127.0.0.1>",
                None,
            ))
        },
    );
    let hosts = host("localhost", port, ", protocol = \"TLS\"");
    let lab = Lab {
        hosts: &hosts,
        ..Default::default()
    };
    let ports = Ports::pick();
    let tls = format!("cert_file = {cert:?}\nkey_file = {key:?}\nca_file = {ca_file:?}");
    let d = Daemon::start(
        "tls-dns",
        ports,
        &tls_config(&lab, ports, free_port(), &tls),
    );
    let out = pbx_calls("uac_call.xml", &d, &[]);
    assert!(!out.status.success(), "the carrier said 486");
    let name = sni.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(name.as_deref(), Some("localhost"), "{}", d.log());
    let line = invites
        .recv_timeout(Duration::from_secs(5))
        .expect("the INVITE reached the resolved address");
    assert!(
        line.contains(&format!("@localhost:{port};transport=tls")),
        "the Request-URI keeps the name: {line}"
    );
}

/// `tls.sni_certificates`: a client that asks for a name gets that name's
/// certificate; one that asks for none gets `cert_file`'s.
#[test]
fn the_listener_serves_the_certificate_of_the_name_asked_for() {
    let certs = cert_dir("sni-server");
    let ca = Ca::new();
    let ca_file = ca.write(&certs);
    let (cert, key) = write_leaf(&certs, "server", &ca.issue(&["127.0.0.1"]));
    let named = ca.issue(&["sip.trunkd.example"]);
    let (ncert, nkey) = write_leaf(&certs, "named", &named);
    let tls = format!(
        "cert_file = {cert:?}\nkey_file = {key:?}\nca_file = {ca_file:?}\n\
         sni_certificates = [ {{ server_name = \"SIP.trunkd.example\", cert_file = {ncert:?}, key_file = {nkey:?} }} ]"
    );
    let (d, tls_port) = tls_listener_daemon("tls-sni-server", "", &tls);
    let dest = SocketAddr::from(([127, 0, 0, 1], tls_port));
    let ca_pem = std::fs::read_to_string(&ca_file).unwrap();
    let by_name = tls_connect_as(
        PBX,
        dest,
        &ca_pem,
        None,
        ServerName::try_from("sip.trunkd.example").unwrap(),
    );
    assert_eq!(served(&by_name), der(&named.0), "the named certificate");
    let mut by_ip = tls_connect(PBX, dest, &ca_pem, None);
    assert_ne!(served(&by_ip), der(&named.0), "the default certificate");
    let probe = options(&by_ip, 1);
    assert!(status_line(&exchange(&mut by_ip, &probe)).contains("200"));
    drop(d);
}
