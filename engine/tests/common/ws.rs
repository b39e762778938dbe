//! Scripted websocket servers that speak a provider's protocol frame for
//! frame, for `engine ingest` and the websocket source: each connection
//! plays its script (send, expect, ping, drop, fall silent), and what the
//! client sent is kept for the test to check.

use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;

use super::*;

/// One step of a connection's script.
#[derive(Debug, Clone)]
pub enum Step {
    /// Refuses the websocket handshake with this HTTP status (first step only).
    Reject(u16),
    /// Waits (up to 10 s) for a text frame from the client containing this text.
    Expect(String),
    /// Sends a text frame.
    Send(String),
    /// Sends a binary frame.
    SendBinary(Vec<u8>),
    /// Sends a ping and waits (up to 10 s) for its pong.
    Ping,
    /// Waits.
    Sleep(Duration),
    /// Ends the TCP connection without a close frame.
    Drop,
    /// Sends a close frame and ends.
    Close,
    /// Neither reads nor writes again: a peer that died without a word.
    Silent,
}

/// `Step::Expect` of `text`.
pub fn expect(text: &str) -> Step {
    Step::Expect(text.to_string())
}

/// `Step::Send` of `frame`.
pub fn send(frame: impl Into<String>) -> Step {
    Step::Send(frame.into())
}

/// Waits up to `deadline` for `done`, polling without blocking the test's
/// runtime (which serves the scripted connections); fails naming `what`.
pub async fn wait_until(
    deadline: Duration,
    what: impl Fn() -> String,
    mut done: impl FnMut() -> bool,
) {
    let until = std::time::Instant::now() + deadline;
    while !done() {
        assert!(
            std::time::Instant::now() < until,
            "timed out waiting for {}",
            what()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What one connection saw.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// The request's path and query.
    pub uri: String,
    /// Text frames the client sent.
    pub received: Vec<String>,
    /// Pongs received for our pings.
    pub pongs: usize,
    /// Steps that failed (an expected frame that did not come).
    pub failures: Vec<String>,
}

/// A server on 127.0.0.1 playing `scripts[i]` to its i-th connection;
/// connections after the last script are held open in silence.
pub struct ScriptedServer {
    /// `ws://127.0.0.1:PORT`.
    pub url: String,
    /// Every connection so far.
    pub log: Arc<Mutex<Vec<Connection>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedServer {
    /// The connections so far.
    pub fn connections(&self) -> Vec<Connection> {
        self.log.lock().unwrap().clone()
    }
}

/// Starts a server for `scripts`.
pub async fn scripted_server(scripts: Vec<Vec<Step>>) -> ScriptedServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let log: Arc<Mutex<Vec<Connection>>> = Arc::default();
    let connections = Arc::clone(&log);
    let task = tokio::spawn(async move {
        for i in 0usize.. {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let script = scripts
                .get(i)
                .cloned()
                .unwrap_or_else(|| vec![Step::Silent]);
            let index = {
                let mut log = connections.lock().unwrap();
                log.push(Connection::default());
                log.len() - 1
            };
            tokio::spawn(play(stream, script, Arc::clone(&connections), index));
        }
    });
    ScriptedServer { url, log, task }
}

async fn play(
    stream: tokio::net::TcpStream,
    script: Vec<Step>,
    log: Arc<Mutex<Vec<Connection>>>,
    index: usize,
) {
    let reject = match script.first() {
        Some(Step::Reject(status)) => Some(*status),
        _ => None,
    };
    let uri_log = Arc::clone(&log);
    let callback =
        move |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
            uri_log.lock().unwrap()[index].uri = request.uri().to_string();
            match reject {
                Some(status) => {
                    let mut refusal = ErrorResponse::new(Some("refused".into()));
                    *refusal.status_mut() = status.try_into().unwrap();
                    Err(refusal)
                }
                None => Ok(response),
            }
        };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let record = |f: &dyn Fn(&mut Connection)| f(&mut log.lock().unwrap()[index]);
    for step in script {
        match step {
            Step::Reject(_) => {}
            Step::Send(text) => {
                if ws.send(Message::text(text)).await.is_err() {
                    return;
                }
            }
            Step::SendBinary(bytes) => {
                if ws.send(Message::binary(bytes)).await.is_err() {
                    return;
                }
            }
            Step::Expect(text) => {
                let wanted = text.clone();
                let found = tokio::time::timeout(Duration::from_secs(10), async {
                    while let Some(Ok(m)) = ws.next().await {
                        if let Message::Text(t) = m {
                            let t = t.to_string();
                            record(&|c| c.received.push(t.clone()));
                            if t.contains(&wanted) {
                                return true;
                            }
                        }
                    }
                    false
                })
                .await;
                if !matches!(found, Ok(true)) {
                    record(&|c| c.failures.push(format!("expected a frame with {text}")));
                    return;
                }
            }
            Step::Ping => {
                if ws
                    .send(Message::Ping(b"are you there".to_vec().into()))
                    .await
                    .is_err()
                {
                    return;
                }
                let pong = tokio::time::timeout(Duration::from_secs(10), async {
                    while let Some(Ok(m)) = ws.next().await {
                        match m {
                            Message::Pong(_) => return true,
                            Message::Text(t) => {
                                let t = t.to_string();
                                record(&|c| c.received.push(t.clone()));
                            }
                            _ => {}
                        }
                    }
                    false
                })
                .await;
                match pong {
                    Ok(true) => record(&|c| c.pongs += 1),
                    _ => record(&|c| c.failures.push("no pong".into())),
                }
            }
            Step::Sleep(d) => tokio::time::sleep(d).await,
            Step::Drop => return,
            Step::Close => {
                let _ = ws.close(None).await;
                return;
            }
            Step::Silent => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
        }
    }
    // The script is played: keep reading (answering pings) until the client goes.
    while let Some(Ok(_)) = ws.next().await {}
}
