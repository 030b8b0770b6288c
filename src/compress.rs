//! In-process compression for dumps: gzip, parallel gzip, zstd, none; and
//! decompression with the format detected from the content.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::mpsc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Compression of a dump file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip, single-threaded (the default; readable by `zcat`).
    #[default]
    Gzip,
    /// gzip members compressed on several threads (still readable by `zcat`).
    Pgzip,
    /// zstd.
    Zstd,
    /// No compression.
    None,
}

impl Compression {
    /// Valid levels for this compressor.
    pub fn levels(self) -> std::ops::RangeInclusive<u32> {
        match self {
            Compression::Gzip | Compression::Pgzip => 1..=9,
            Compression::Zstd => 1..=19,
            Compression::None => 0..=0,
        }
    }

    /// The keyword as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Pgzip => "pgzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }
}

/// A writer that compresses into `W` and can be finished explicitly (so
/// that errors in the final flush are not lost in a drop).
pub trait Finish: Write {
    /// Writes the trailer and flushes.
    fn finish(self: Box<Self>) -> io::Result<()>;
}

struct Plain<W: Write>(W);

impl<W: Write> Write for Plain<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> Finish for Plain<W> {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> Finish for flate2::write::GzEncoder<W> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        (*self).finish()?.flush()
    }
}

impl<W: Write> Finish for zstd::stream::write::Encoder<'static, W> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        (*self).finish()?.flush()
    }
}

/// Gzip on several threads: the input is cut into blocks, each compressed
/// as its own gzip member (concatenated members are one valid gzip stream,
/// readable by `zcat`), written in order.
struct ParallelGzip<W: Write> {
    out: W,
    level: u32,
    block: Vec<u8>,
    jobs: Option<mpsc::SyncSender<(u64, Vec<u8>)>>,
    results: mpsc::Receiver<(u64, io::Result<Vec<u8>>)>,
    workers: Vec<std::thread::JoinHandle<()>>,
    sent: u64,
    written: u64,
    pending: std::collections::BTreeMap<u64, Vec<u8>>,
}

const BLOCK: usize = 1 << 20;

impl<W: Write> ParallelGzip<W> {
    fn new(out: W, level: u32, threads: usize) -> ParallelGzip<W> {
        let (job_tx, job_rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(threads * 2);
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let (res_tx, res_rx) = mpsc::channel();
        let workers = (0..threads.max(1))
            .map(|_| {
                let job_rx = job_rx.clone();
                let res_tx = res_tx.clone();
                std::thread::spawn(move || {
                    loop {
                        let job = match job_rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok((seq, data)) = job else { return };
                        let mut enc = flate2::write::GzEncoder::new(
                            Vec::with_capacity(data.len() / 3),
                            flate2::Compression::new(level),
                        );
                        let out = enc.write_all(&data).and_then(|()| enc.finish());
                        if res_tx.send((seq, out)).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        ParallelGzip {
            out,
            level,
            block: Vec::with_capacity(BLOCK),
            jobs: Some(job_tx),
            results: res_rx,
            workers,
            sent: 0,
            written: 0,
            pending: Default::default(),
        }
    }

    fn drain(&mut self, wait_for_all: bool) -> io::Result<()> {
        loop {
            while let Some(data) = self.pending.remove(&self.written) {
                self.out.write_all(&data)?;
                self.written += 1;
            }
            if self.written == self.sent {
                return Ok(());
            }
            // Keep at most a few blocks in flight before waiting.
            let must_wait =
                wait_for_all || self.sent - self.written > (self.workers.len() as u64) * 2;
            let next = if must_wait {
                self.results
                    .recv()
                    .map_err(|_| io::Error::other("a compression thread died"))?
            } else {
                match self.results.try_recv() {
                    Ok(r) => r,
                    Err(_) => return Ok(()),
                }
            };
            let (seq, data) = next;
            self.pending.insert(seq, data?);
        }
    }

    fn send_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("compressor already finished"))?;
        jobs.send((self.sent, data))
            .map_err(|_| io::Error::other("a compression thread died"))?;
        self.sent += 1;
        self.drain(false)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK - self.block.len();
        let n = room.min(buf.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK {
            self.send_block()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Finish for ParallelGzip<W> {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.send_block()?;
        if self.sent == 0 {
            // An empty input still makes a valid (empty) gzip file.
            let enc =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(self.level));
            self.out.write_all(&enc.finish()?)?;
        }
        self.drain(true)?;
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.out.flush()
    }
}

/// A reader or writer that adds the bytes passing through it to a step's
/// progress (one relaxed add per buffer): a dump's output on its way to
/// the compressor, a restore's file on its way to the decompressor.
pub struct Counted<T> {
    inner: T,
    progress: std::sync::Arc<crate::progress::Progress>,
}

impl<T> Counted<T> {
    /// Counts what passes through `inner` into `progress`.
    pub fn new(inner: T, progress: std::sync::Arc<crate::progress::Progress>) -> Counted<T> {
        Counted { inner, progress }
    }
}

impl<T: Read> Read for Counted<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add_bytes(n as u64);
        Ok(n)
    }
}

impl<T: Write> Write for Counted<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.add_bytes(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Finish for Counted<Box<dyn Finish>> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        self.inner.finish()
    }
}

/// A compressing writer of the chosen kind around `out`.
pub fn encoder<W: Write + Send + 'static>(
    kind: Compression,
    level: Option<u32>,
    threads: usize,
    out: W,
) -> io::Result<Box<dyn Finish>> {
    Ok(match kind {
        Compression::None => Box::new(Plain(out)),
        Compression::Gzip => Box::new(flate2::write::GzEncoder::new(
            out,
            flate2::Compression::new(level.unwrap_or(6)),
        )),
        Compression::Pgzip => Box::new(ParallelGzip::new(out, level.unwrap_or(6), threads)),
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(out, level.unwrap_or(3) as i32)?;
            // A frame checksum (xxhash, cheap): damage inside a zstd dump
            // is found when it is read back, as gzip's CRC finds it.
            enc.include_checksum(true)?;
            Box::new(enc)
        }
    })
}

/// A reader that decompresses `input`, recognising gzip (also multi-member)
/// and zstd by their magic bytes; anything else is read as is.
pub fn decoder<R: Read + 'static>(input: R) -> io::Result<(Box<dyn Read>, &'static str)> {
    decoder_buffered(BufReader::with_capacity(256 * 1024, input))
}

/// As [`decoder`], on a buffered reader the decompressor reads from
/// directly (so that what it consumed of the file can be counted: the
/// compressed offset of a damaged dump).
pub fn decoder_buffered<'a, R: BufRead + 'a>(
    mut input: R,
) -> io::Result<(Box<dyn Read + 'a>, &'static str)> {
    let head = input.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        (
            Box::new(flate2::bufread::MultiGzDecoder::new(input)),
            "gzip",
        )
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        (
            Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
            "zstd",
        )
    } else {
        (Box::new(input), "plain")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what an encoder writes (encoders need `Send + 'static` writers).
    struct Sink(std::sync::mpsc::Sender<Vec<u8>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let _ = self.0.send(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn round_trip(kind: Compression, data: &[u8]) {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let mut enc = encoder(kind, None, 2, Sink(tx)).expect("encoder");
        for chunk in data.chunks(70_000) {
            enc.write_all(chunk).expect("write");
        }
        enc.finish().expect("finish");
        let compressed: Vec<u8> = rx.try_iter().flatten().collect();
        let (mut dec, _) = decoder(std::io::Cursor::new(compressed)).expect("decoder");
        let mut back = Vec::new();
        dec.read_to_end(&mut back).expect("read");
        assert_eq!(back, data, "{kind:?}");
    }

    #[test]
    fn every_compression_round_trips() {
        let data: Vec<u8> = (0..3_500_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 7919) as u8)
            .collect();
        for kind in [
            Compression::Gzip,
            Compression::Pgzip,
            Compression::Zstd,
            Compression::None,
        ] {
            round_trip(kind, &data);
            round_trip(kind, b"");
        }
    }

    #[test]
    fn parallel_gzip_is_readable_by_zcat() {
        let data = "line of sql;\n".repeat(300_000);
        let mut out = Vec::new();
        {
            let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
            let mut enc = encoder(Compression::Pgzip, Some(6), 2, Sink(tx)).expect("encoder");
            enc.write_all(data.as_bytes()).expect("write");
            enc.finish().expect("finish");
            out.extend(rx.try_iter().flatten());
        }
        let mut child = std::process::Command::new("zcat")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("zcat");
        let mut stdin = child.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || stdin.write_all(&out));
        let result = child.wait_with_output().expect("zcat output");
        writer.join().expect("join").expect("write");
        assert!(result.status.success());
        assert_eq!(result.stdout, data.as_bytes());
    }
}
