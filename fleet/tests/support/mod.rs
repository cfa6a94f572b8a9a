//! An HTTP bundle server a test or benchmark controls: what it answers (an archive with an ETag,
//! a status, a stall, a truncated body) can change between requests, and it counts requests and
//! conditional ones. HTTP/1.1 keep-alive, one thread per connection.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server answers.
#[derive(Clone)]
pub enum Reply {
    /// The archive with this ETag (a matching `If-None-Match` gets a 304).
    Archive(Vec<u8>, String),
    Status(u16),
    /// Nothing for this long.
    Stall(Duration),
    /// A `Content-Length` of the whole archive and half of it, then the connection closes.
    Truncated(Vec<u8>),
}

pub struct BundleServer {
    pub url: String,
    reply: Arc<Mutex<Reply>>,
    pub requests: Arc<AtomicUsize>,
    pub conditional: Arc<AtomicUsize>,
}

impl BundleServer {
    pub fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/bundle.tar.gz", listener.local_addr().unwrap());
        let server = Self {
            url,
            reply: Arc::new(Mutex::new(reply)),
            requests: Arc::default(),
            conditional: Arc::default(),
        };
        let (reply, requests, conditional) = (
            server.reply.clone(),
            server.requests.clone(),
            server.conditional.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (reply, requests, conditional) =
                    (reply.clone(), requests.clone(), conditional.clone());
                std::thread::spawn(move || {
                    serve(stream, &reply, &requests, &conditional);
                });
            }
        });
        server
    }

    pub fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }
}

/// Answers the requests of one connection (keep-alive) until it closes.
fn serve(
    stream: TcpStream,
    reply: &Mutex<Reply>,
    requests: &AtomicUsize,
    conditional: &AtomicUsize,
) {
    // Each answer goes out in one write, at once (no delayed-ACK stall on its last segment).
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stream);
    loop {
        let mut if_none_match = None;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("if-none-match") {
                    if_none_match = Some(value.trim().to_owned());
                }
            }
        }
        requests.fetch_add(1, Ordering::SeqCst);
        if if_none_match.is_some() {
            conditional.fetch_add(1, Ordering::SeqCst);
        }
        let reply = reply.lock().unwrap().clone();
        let written = match reply {
            Reply::Archive(_, etag) if if_none_match.as_deref() == Some(etag.as_str()) => {
                write!(out, "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\n\r\n")
            }
            Reply::Archive(body, etag) => write!(
                out,
                "HTTP/1.1 200 OK\r\nETag: {etag}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .and_then(|()| out.write_all(&body)),
            Reply::Status(code) => {
                write!(out, "HTTP/1.1 {code} Oops\r\nContent-Length: 0\r\n\r\n")
            }
            Reply::Stall(time) => {
                std::thread::sleep(time);
                return;
            }
            Reply::Truncated(body) => {
                let _ = write!(
                    out,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .and_then(|()| out.write_all(&body[..body.len() / 2]))
                .and_then(|()| out.flush());
                return;
            }
        };
        if written.and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}
