//! One decompressed stream, many readers.
//!
//! The producer (on its own thread) fills chunks of [`CHUNK`] bytes and sends
//! the same `Arc` to every consumer through a channel of [`QUEUE`] slots, so a
//! chunk exists once however many slots read it, and the producer waits for
//! the slowest consumer. At most `QUEUE + 2` chunks are in flight (the
//! slowest queue full, the chunk that consumer holds, the one being filled),
//! plus as many kept for reuse: about 12 MiB whatever the archive size and
//! the number of destinations.
//!
//! A consumer reads its queue through [`ChunkReader`], a [`BufRead`] whose
//! buffer is the shared chunk: tar headers and file data are read straight
//! out of it. If the producer fails it sends the error to every consumer; if a
//! consumer fails it drops its queue, the producer notices on its next send
//! and tells the others to stop.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

/// Bytes per chunk.
pub const CHUNK: usize = 1 << 20;
/// Chunks queued per consumer.
pub const QUEUE: usize = 4;

/// What travels to a consumer.
pub enum Msg {
    /// The next piece of the stream.
    Data(Arc<Vec<u8>>),
    /// The producer failed or was stopped; the consumer must fail with this.
    Fail(String),
}

/// The producer's end: sends every chunk to every consumer.
pub struct Fanout {
    senders: Vec<SyncSender<Msg>>,
}

/// A consumer's end of the stream.
pub struct ChunkReader {
    rx: Receiver<Msg>,
    chunk: Arc<Vec<u8>>,
    pos: usize,
    eof: bool,
}

/// Makes a fan-out to `n` consumers.
pub fn fanout(n: usize) -> (Fanout, Vec<ChunkReader>) {
    let mut senders = Vec::with_capacity(n);
    let mut readers = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = sync_channel(QUEUE);
        senders.push(tx);
        readers.push(ChunkReader {
            rx,
            chunk: Arc::new(Vec::new()),
            pos: 0,
            eof: false,
        });
    }
    (Fanout { senders }, readers)
}

/// A consumer stopped reading before the end (it failed; its own error says why).
#[derive(Debug)]
pub struct ConsumerGone;

impl std::fmt::Display for ConsumerGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a destination stopped reading")
    }
}
impl std::error::Error for ConsumerGone {}

impl Fanout {
    /// Reads `input` to its end and sends it to every consumer. On a read
    /// error every consumer is told, and the error returned.
    pub fn pump(&self, input: &mut dyn Read) -> anyhow::Result<u64> {
        let mut total = 0u64;
        // Chunks recently sent, oldest first. Once every consumer is done
        // with one, its buffer is filled again instead of freeing it and
        // allocating a new one (musl's malloc would mmap and munmap each).
        let mut sent: VecDeque<Arc<Vec<u8>>> = VecDeque::new();
        loop {
            let free = match sent.front() {
                Some(c) if Arc::strong_count(c) == 1 => sent.pop_front(),
                _ => None,
            };
            let mut buf = match free.and_then(|c| Arc::try_unwrap(c).ok()) {
                Some(mut v) => {
                    v.clear();
                    v
                }
                None => Vec::with_capacity(CHUNK),
            };
            if let Err(e) = input.take(CHUNK as u64).read_to_end(&mut buf) {
                let err = anyhow::Error::new(e);
                self.fail(&format!("{err:#}"));
                return Err(err);
            }
            if buf.is_empty() {
                return Ok(total);
            }
            total += buf.len() as u64;
            let chunk = Arc::new(buf);
            for tx in &self.senders {
                if tx.send(Msg::Data(chunk.clone())).is_err() {
                    self.fail("stopped because another destination failed");
                    return Err(anyhow::Error::new(ConsumerGone));
                }
            }
            sent.push_back(chunk);
            if sent.len() > QUEUE + 2 {
                sent.pop_front();
            }
        }
    }

    /// Tells every consumer still listening to fail with `why`.
    pub fn fail(&self, why: &str) {
        for tx in &self.senders {
            let _ = tx.send(Msg::Fail(why.to_owned()));
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), avail.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.chunk.len() && !self.eof {
            match self.rx.recv() {
                Ok(Msg::Data(c)) => {
                    self.chunk = c;
                    self.pos = 0;
                }
                Ok(Msg::Fail(why)) => return Err(io::Error::other(Aborted(why))),
                // The producer finished and dropped its senders: the end.
                Err(_) => self.eof = true,
            }
        }
        Ok(self.chunk.get(self.pos..).unwrap_or_default())
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.chunk.len());
    }
}

/// The stream was stopped by the producer (its error is the real one).
#[derive(Debug)]
pub struct Aborted(pub String);

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stream stopped: {}", self.0)
    }
}
impl std::error::Error for Aborted {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_consumer_sees_the_whole_stream() {
        let data: Vec<u8> = (0..(3 * CHUNK + 123)).map(|i| (i % 251) as u8).collect();
        let (fan, readers) = fanout(3);
        std::thread::scope(|s| {
            let handles: Vec<_> = readers
                .into_iter()
                .map(|mut r| {
                    s.spawn(move || {
                        let mut v = Vec::new();
                        r.read_to_end(&mut v).unwrap();
                        v
                    })
                })
                .collect();
            let n = fan.pump(&mut data.as_slice()).unwrap();
            assert_eq!(n, data.len() as u64);
            drop(fan);
            for h in handles {
                assert!(h.join().unwrap() == data);
            }
        });
    }

    #[test]
    fn a_failing_consumer_stops_the_producer_and_the_others() {
        let (fan, mut readers) = fanout(2);
        let quitter = readers.pop().unwrap();
        let mut stayer = readers.pop().unwrap();
        drop(quitter);
        std::thread::scope(|s| {
            let h = s.spawn(move || {
                let mut v = Vec::new();
                stayer.read_to_end(&mut v)
            });
            let big = vec![0u8; 4 * CHUNK];
            let err = fan.pump(&mut big.as_slice()).unwrap_err();
            assert!(err.is::<ConsumerGone>());
            let e = h.join().unwrap().unwrap_err();
            assert!(e.to_string().contains("another destination failed"), "{e}");
        });
    }

    #[test]
    fn producer_errors_reach_consumers() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("zstd data is corrupt"))
            }
        }
        let (fan, mut readers) = fanout(1);
        let mut r = readers.pop().unwrap();
        assert!(fan.pump(&mut Broken).is_err());
        let e = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("zstd data is corrupt"));
    }
}
