//! A real headless Chromium (Debian's, installed by scripts/browser.sh),
//! driven over the DevTools protocol: pages are loaded as a person's
//! browser loads them, scripts and Server-Sent Events included.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// `GET path` on `addr`: (status code, body). Reads `Content-Length`
/// bytes when the server says (Chromium's DevTools server keeps the
/// connection open), else to the end.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut chunk = [0u8; 65536];
    let (head, body_at) = loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before the headers");
        response.extend_from_slice(&chunk[..n]);
        if let Some(at) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break (String::from_utf8_lossy(&response[..at]).to_string(), at + 4);
        }
    };
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    match length {
        Some(length) => {
            while response.len() < body_at + length {
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed inside the body");
                response.extend_from_slice(&chunk[..n]);
            }
        }
        None => {
            stream.read_to_end(&mut response).await.unwrap();
        }
    }
    let body = String::from_utf8_lossy(&response[body_at..]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = match head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        true => unchunk(&body),
        false => body,
    };
    (status, body)
}

/// A chunked HTTP/1.1 body, joined.
fn unchunk(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// One headless Chromium showing one page.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    page: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Browser {
    /// Starts Chromium (`$CHROMIUM`, else `chromium`) on `url`, 1280x800.
    pub async fn open(url: &str) -> Self {
        let exe = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(&exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--window-size=1280,800",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {exe} (scripts/browser.sh installs it): {e}"));
        // Its DevTools address comes on stderr; the rest of stderr is drained after.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(at) = line.strip_prefix("DevTools listening on ws://") {
                    let _ = tx.send(at.split('/').next().unwrap_or_default().to_string());
                }
            }
        });
        let devtools = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("Chromium printed its DevTools address");
        let addr = devtools.parse().unwrap();
        let mut ws_url = None;
        for _ in 0..100 {
            let (_, list) = http_get(addr, "/json/list").await;
            let targets: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap_or_default();
            ws_url = targets
                .iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(String::from));
            if ws_url.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (page, _) = tokio_tungstenite::connect_async(ws_url.expect("a page target"))
            .await
            .unwrap();
        Self {
            child,
            _profile: profile,
            page,
            next_id: 0,
        }
    }

    /// Calls DevTools method `method`; its result.
    pub async fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = serde_json::json!({"id": id, "method": method, "params": params});
        self.page
            .send(WsMessage::Text(request.to_string().into()))
            .await
            .unwrap();
        while let Some(message) = self.page.next().await {
            let WsMessage::Text(text) = message.unwrap() else {
                continue;
            };
            let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
        panic!("Chromium closed the DevTools connection during {method}");
    }

    /// The value of JavaScript `expression` in the page.
    pub async fn eval(&mut self, expression: &str) -> serde_json::Value {
        let params = serde_json::json!({"expression": expression, "returnByValue": true});
        let result = self.call("Runtime.evaluate", params).await;
        result["result"]["value"].clone()
    }

    /// Saves the page as a PNG at `path`.
    pub async fn screenshot(&mut self, path: &std::path::Path) {
        use base64::Engine as _;
        let shot = self
            .call(
                "Page.captureScreenshot",
                serde_json::json!({"format": "png"}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
