//! The server binary as a child process: `serve --dev` on a data directory of its own (a local
//! Postgres it starts), its JSON log read line by line, and a minimal HTTP/1.0 client. Included
//! with `#[path]` by the tests that start the binary, not through `common`, which the hosted
//! crate's tests share and which therefore cannot name this crate's binary.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A running `research-graph serve`.
pub struct Server {
    /// The process.
    pub child: Child,
    lines: Receiver<String>,
    /// The log lines read so far.
    pub log: Vec<String>,
    /// `host:port` it listens on.
    pub addr: String,
}

impl Server {
    /// `serve --dev` on `dir`.
    pub fn start(dir: &Path) -> Server {
        Server::start_with(dir, &[])
    }

    /// `serve --dev` on `dir`, with extra environment.
    pub fn start_with(dir: &Path, env: &[(&str, String)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_research-graph"));
        command
            .args(["serve", "--dev", "--port", "0", "--data-dir"])
            .arg(dir)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env_remove("DATABASE_URL")
            .env_remove("ADMIN_DATABASE_URL")
            .env_remove("PORT");
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start research-graph serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            lines,
            log: Vec::new(),
            addr: String::new(),
        };
        let line = server
            .wait_for("research-graph listening", Duration::from_secs(120))
            .expect("the server starts listening");
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        let address = json["fields"]["address"].as_str().unwrap();
        server.addr = address.trim_start_matches("socket://").to_owned();
        server
    }

    /// Reads log lines until one contains `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return Some(line);
                    }
                }
                Err(_) => break,
            }
        }
        None
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits for the process to exit (60 s at most), reading the rest of its log.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                    self.log.push(line);
                }
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether a log line read so far contains `needle`.
    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.iter().any(|l| l.contains(needle))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.0 exchange: (status, body).
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the server");
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A data directory under /tmp (as root, Postgres runs as `postgres`, which must reach it).
pub fn data_dir() -> tempfile::TempDir {
    // Under /tmp: when the tests run as root, Postgres runs as the `postgres` account, which
    // must be able to reach the directory.
    tempfile::Builder::new()
        .prefix("rg-serve-")
        .tempdir_in("/tmp")
        .unwrap()
}
