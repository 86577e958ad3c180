//! A real S3-compatible server on loopback for the remote-tier tests and
//! bench: moto's server mode (`pip install "moto[server]"`), one process
//! per test, in memory.
//!
//! moto implements the conditional puts the remote tier relies on
//! (`If-None-Match: *` refused with 412 when the object exists, `If-Match`
//! refused with 412 on a stale ETag). When it cannot be started the tests
//! skip with a loud message, except under CI (`CI` set), where they fail.
#![allow(dead_code)]

use scopecache::remote::{Remote, RemoteConfig};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Access keys the test server accepts (moto accepts any).
pub const KEY_ID: &str = "test-key";
/// The matching secret.
pub const SECRET: &str = "test-secret";

/// A running moto server.
pub struct S3Server {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn python() -> String {
    std::env::var("SCOPECACHE_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

impl S3Server {
    /// Starts a server on a free port, or returns None (after a loud
    /// message) when moto is not installed; under CI it panics instead.
    pub fn start() -> Option<S3Server> {
        S3Server::start_on(free_port())
    }

    /// Starts a server on `port`; see [`S3Server::start`].
    pub fn start_on(port: u16) -> Option<S3Server> {
        match S3Server::try_start(port) {
            Ok(s) => Some(s),
            Err(why) => {
                let msg = format!(
                    "the S3 test server (moto) could not be started: {why}; install it with \
                     `python3 -m pip install \"moto[server]\"`"
                );
                if std::env::var_os("CI").is_some() {
                    panic!("{msg}");
                }
                eprintln!("\n!!!!!!!! SKIPPING REMOTE TEST: {msg} !!!!!!!!\n");
                None
            }
        }
    }

    fn try_start(port: u16) -> Result<S3Server, String> {
        let child = Command::new(python())
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            // moto refuses bodies over 50 MiB by default.
            .env("MOTO_MAX_FORM_MEMORY_SIZE", (8u64 << 30).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", python()))?;
        let mut server = S3Server {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = server.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(format!("it exited at once ({status})"));
                }
            }
            if server.request("GET", "/").is_ok_and(|s| s == 200) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err("it did not answer within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A bare HTTP request without a body; returns the status code.
    fn request(&self, method: &str, path: &str) -> std::io::Result<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        let text = String::from_utf8_lossy(&head[9..12]).to_string();
        text.parse()
            .map_err(|_| std::io::Error::other(format!("bad status {text:?}")))
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, name: &str) {
        let status = self.request("PUT", &format!("/{name}")).expect("create bucket");
        assert_eq!(status, 200, "create bucket {name}");
    }

    /// A remote configuration for `url` on this server, with short timeouts.
    pub fn config(&self, url: &str) -> RemoteConfig {
        let mut c = RemoteConfig::new(url).expect("a remote URL");
        c.endpoint = Some(self.endpoint());
        c.region = Some("us-east-1".into());
        c.access_key_id = Some(KEY_ID.into());
        c.secret_access_key = Some(SECRET.into());
        c.allow_http = Some(true);
        c.timeout = Duration::from_secs(3);
        c.connect_timeout = Duration::from_secs(1);
        c.max_retries = 1;
        c.retry_timeout = Duration::from_secs(3);
        c
    }

    /// A `Remote` for `url` on this server.
    pub fn remote(&self, url: &str) -> Remote {
        Remote::new(self.config(url)).expect("a remote")
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) with a pid this process spawned and has not
            // reaped yet (the Child is still held); it touches no memory.
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
    }

    /// Stops the server process (SIGSTOP): connections stay open but
    /// nothing answers.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused server run again.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Kills the server; its objects are gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}
