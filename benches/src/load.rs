//! A minimal keep-alive HTTP/1.1 GET client: so that what is measured is the
//! server, not the client's own machinery.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One keep-alive connection issuing GETs.
#[derive(Debug)]
pub struct RawClient {
    stream: TcpStream,
    request: Vec<u8>,
    buffer: Vec<u8>,
}

impl RawClient {
    /// Connects to `addr` for GETs of `path`.
    pub async fn connect(addr: SocketAddr, path: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            request: format!("GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n").into_bytes(),
            buffer: Vec::with_capacity(4096),
        })
    }

    /// Sends one request and reads the whole response; returns the status code.
    pub async fn get(&mut self) -> std::io::Result<u16> {
        self.stream.write_all(&self.request).await?;
        self.buffer.clear();
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed",
                ));
            }
            self.buffer.extend_from_slice(&chunk[..n]);
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buffer[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while self.buffer.len() < end + 4 + length {
                    let n = self.stream.read(&mut chunk).await?;
                    if n == 0 {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "closed",
                        ));
                    }
                    self.buffer.extend_from_slice(&chunk[..n]);
                }
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                return Ok(status);
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Runs `connections` clients against `addr` for `duration`; returns each
/// request's latency and the count of non-200 answers.
pub async fn closed_loop(
    addr: SocketAddr,
    path: &str,
    connections: usize,
    duration: Duration,
) -> (Vec<Duration>, usize) {
    let stop = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut client = RawClient::connect(addr, &path).await.expect("connect");
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < stop {
                let t = Instant::now();
                match client.get().await {
                    Ok(200) => latencies.push(t.elapsed()),
                    Ok(_) => {
                        latencies.push(t.elapsed());
                        errors += 1;
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.expect("load task");
        all.extend(l);
        errors += e;
    }
    (all, errors)
}
