//! A file server on 127.0.0.1 for install tests: one path, whose bytes the
//! test can replace (a `latest` URL that moves on), with an ETag per
//! version; every other path is 404.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// A running server; it lives as long as the test process.
pub struct FileServer {
    /// The URL of the file.
    pub url: String,
    body: Arc<Mutex<(Vec<u8>, u32)>>,
}

impl FileServer {
    /// Serves `body` at `http://127.0.0.1:PORT/NAME`.
    pub fn start(name: &str, body: Vec<u8>) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/{name}", listener.local_addr().unwrap());
        let path = format!("/{name}");
        let body = Arc::new(Mutex::new((body, 1u32)));
        let shared = body.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut line = String::new();
                let mut r = BufReader::new(&conn);
                let _ = r.read_line(&mut line);
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let (bytes, version) = shared.lock().unwrap().clone();
                let _ = if line.starts_with(&format!("GET {path} ")) {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"v{version}\"\r\n\r\n",
                        bytes.len()
                    );
                    conn.write_all(head.as_bytes())
                        .and_then(|()| conn.write_all(&bytes))
                } else {
                    conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                };
            }
        });
        FileServer { url, body }
    }

    /// From now on the URL serves `bytes` (a new version).
    pub fn replace(&self, bytes: Vec<u8>) {
        let mut b = self.body.lock().unwrap();
        b.0 = bytes;
        b.1 += 1;
    }
}
