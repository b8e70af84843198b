//! A token endpoint on 127.0.0.1:0 that answers each request with a scripted fault, written
//! byte by byte on a raw TCP socket (so it can do what no well-behaved HTTP server does:
//! reset mid-body, drip forever, hang, lie about lengths).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the endpoint does with one request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// An HTTP answer: status, extra headers, body (sent with a correct Content-Length).
    Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Closes the connection without a byte of answer.
    Close,
    /// Promises a 1,000-byte JSON body, sends 10 bytes, resets the connection.
    ResetMidBody,
    /// Sends the headers, then one byte of body every 50 ms, for ever.
    Drip,
    /// Reads the request and never answers.
    Hang,
    /// A 200 with a chunked body of this many bytes.
    Chunked(usize),
}

impl Fault {
    /// A 200 with this JSON body.
    pub fn json(body: serde_json::Value) -> Fault {
        Fault::answer(
            200,
            &[("content-type", "application/json")],
            &body.to_string(),
        )
    }

    /// A good token answer: `access_token` (and `refresh_token`), valid for `secs`.
    pub fn token(access_token: &str, secs: u64) -> Fault {
        Fault::json(serde_json::json!({
            "access_token": access_token,
            "token": access_token,
            "token_type": "Bearer",
            "expires_in": secs,
            "refresh_token": format!("rt-after-{access_token}"),
        }))
    }

    pub fn status(status: u16) -> Fault {
        Fault::answer(status, &[("content-type", "text/plain")], "unavailable")
    }

    pub fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Fault {
        Fault::Answer {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_owned(),
        }
    }
}

#[derive(Default)]
struct Script {
    next: VecDeque<Fault>,
    default: Option<Fault>,
    /// When each request arrived.
    arrivals: Vec<Instant>,
}

/// The running endpoint; its task ends with the test's runtime.
#[derive(Clone)]
pub struct FaultEndpoint {
    base: String,
    script: Arc<Mutex<Script>>,
    /// The number of requests so far, for tests that wait for one to arrive.
    count: tokio::sync::watch::Sender<usize>,
}

impl FaultEndpoint {
    pub async fn start(default: Fault) -> FaultEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let script = Arc::new(Mutex::new(Script {
            default: Some(default),
            ..Script::default()
        }));
        let count = tokio::sync::watch::Sender::new(0);
        let (shared, counter) = (script.clone(), count.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone(), counter.clone()));
            }
        });
        FaultEndpoint {
            base,
            script,
            count,
        }
    }

    pub fn url(&self) -> String {
        format!("{}/token", self.base)
    }

    /// Answers the next requests with these faults, then with the default.
    pub fn then(&self, faults: impl IntoIterator<Item = Fault>) {
        self.script.lock().unwrap().next.extend(faults);
    }

    pub fn set_default(&self, fault: Fault) {
        self.script.lock().unwrap().default = Some(fault);
    }

    /// Waits until `n` requests have arrived (at most 10 s, then fails the test).
    pub async fn wait_for_requests(&self, n: usize) {
        let mut count = self.count.subscribe();
        tokio::time::timeout(Duration::from_secs(10), count.wait_for(|c| *c >= n))
            .await
            .expect("the requests arrive")
            .unwrap();
    }

    /// When each request arrived.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.script.lock().unwrap().arrivals.clone()
    }
}

/// Reads one request (headers, and a body by Content-Length).
async fn read_request(stream: &mut TcpStream) -> Option<()> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Some(())
}

async fn serve(
    mut stream: TcpStream,
    script: Arc<Mutex<Script>>,
    count: tokio::sync::watch::Sender<usize>,
) {
    if read_request(&mut stream).await.is_none() {
        return;
    }
    let fault = {
        let mut script = script.lock().unwrap();
        script.arrivals.push(Instant::now());
        count.send_replace(script.arrivals.len());
        let default = script.default.clone();
        script.next.pop_front().or(default)
    };
    let Some(fault) = fault else { return };
    let _ = answer(&mut stream, fault).await;
}

async fn answer(stream: &mut TcpStream, fault: Fault) -> std::io::Result<()> {
    match fault {
        Fault::Answer {
            status,
            headers,
            body,
        } => {
            let mut head = format!("HTTP/1.1 {status} X\r\nconnection: close\r\n");
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body.as_bytes()).await?;
            stream.shutdown().await
        }
        Fault::Close => Ok(()),
        Fault::ResetMidBody => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"access_t")
                .await?;
            // A zero linger sends a reset instead of a clean close (and does not block: the
            // deprecation is about non-zero lingers).
            #[allow(deprecated)]
            stream.set_linger(Some(Duration::ZERO))?;
            Ok(())
        }
        Fault::Drip => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n")
                .await?;
            loop {
                stream.write_all(b" ").await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Fault::Hang => {
            std::future::pending::<()>().await;
            Ok(())
        }
        Fault::Chunked(size) => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
                .await?;
            let chunk = vec![b' '; 8192];
            let mut left = size;
            while left > 0 {
                let n = left.min(chunk.len());
                stream.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                stream.write_all(&chunk[..n]).await?;
                stream.write_all(b"\r\n").await?;
                left -= n;
            }
            stream.write_all(b"0\r\n\r\n").await?;
            stream.shutdown().await
        }
    }
}
