//! Log output (stderr), buffered on the API server threads.
//!
//! Every relayed request logs one line (the access log, `crate::usage::RequestLog`). Written
//! straight to stderr that is one `write(2)` per request. So each API server thread
//! ([`crate::server::run_threads`]) collects its lines in a buffer of its own and writes them out
//! in one call when [`BUFFER_BYTES`] are reached, `LOG_FLUSH_MS` after the first line of a batch
//! (its flush task), and when the thread ends, as Envoy's access logs and nginx's `access_log ... buffer= flush=`
//! do: 0.01 `write` calls per request instead of 1 (`strace -c`), 46.4 against 48.0 µs of CPU
//! per non-streamed request (medians of 5 rounds of `benches/ab.sh`; README, Benchmark).
//! Lines of one thread keep their order; lines of different threads interleave per flush (each
//! carries its timestamp). A process crash (`kill -9`) loses about the last `LOG_FLUSH_MS` of those
//! lines (more when a thread is too busy to run its flush task on time), the same window as the
//! usage records (`crate::usage::recorder::FLUSH_INTERVAL`). Every other thread (start-up, admin,
//! usage writer) writes each line at once, as do the server threads when `LOG_FLUSH_MS=0`.
//!
//! Logging is best effort: a line that cannot be written is dropped, never an error or a panic.

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::Arc;

/// Bytes a thread's buffer holds before they are written regardless of the flush interval
/// (~100 access-log lines).
pub const BUFFER_BYTES: usize = 32 * 1024;

/// A thread's pending log bytes, and the signal for its flush task that the first line since the
/// last write-out arrived; written out when dropped (thread exit).
struct Pending(Vec<u8>, Arc<tokio::sync::Notify>);

impl Pending {
    fn write_out(&mut self) -> io::Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let r = emit(&self.0);
        self.0.clear();
        // One huge line does not keep its memory for the thread's life.
        if self.0.capacity() > 4 * BUFFER_BYTES {
            self.0.shrink_to(BUFFER_BYTES);
        }
        r
    }
}

/// Write `data` to stderr in one call (unit tests capture it per thread instead).
fn emit(data: &[u8]) -> io::Result<()> {
    #[cfg(test)]
    if let Some(r) = tests::capture(data) {
        return r;
    }
    io::stderr().lock().write_all(data)
}

impl Drop for Pending {
    fn drop(&mut self) {
        let _ = self.write_out();
    }
}

thread_local! {
    /// `Some` on threads that buffer their lines ([`buffer_this_thread`]).
    static PENDING: RefCell<Option<Pending>> = const { RefCell::new(None) };
}

/// From now on, buffer the calling thread's log lines until [`flush_this_thread`], until
/// [`BUFFER_BYTES`] are pending, or until the thread ends. Returns the signal given (`notify_one`)
/// when a line arrives in an empty buffer: the thread's flush task waits for it, then for
/// `LOG_FLUSH_MS`, then flushes, so an idle server thread is never woken for nothing.
pub fn buffer_this_thread() -> Arc<tokio::sync::Notify> {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let p = p.get_or_insert_with(|| {
            Pending(
                Vec::with_capacity(BUFFER_BYTES),
                Arc::new(tokio::sync::Notify::new()),
            )
        });
        Arc::clone(&p.1)
    })
}

/// Write out the calling thread's pending log lines (nothing on a thread that does not buffer).
pub fn flush_this_thread() {
    let _ = PENDING.try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut()
            && let Some(p) = p.as_mut()
        {
            let _ = p.write_out();
        }
    });
}

/// The log writer (`tracing_subscriber::fmt().with_writer(StderrLog)`): stderr, through the
/// calling thread's buffer where there is one.
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrLog;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrLog {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine
    }
}

/// One formatted log event on its way to stderr (see [`StderrLog`]).
#[derive(Debug)]
pub struct LogLine;

impl Write for LogLine {
    /// Always `Ok(data.len())`: a line that cannot be written is dropped (best effort; an error
    /// here would make `tracing-subscriber` report it on stderr, the stream that just failed).
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // `None`: not buffered here (a thread that does not buffer, a log call while this thread
        // writes out its buffer, or one during the thread's teardown): straight through.
        let buffered = PENDING
            .try_with(|p| {
                let mut p = p.try_borrow_mut().ok()?;
                let p = p.as_mut()?;
                if p.0.is_empty() {
                    p.1.notify_one();
                }
                p.0.extend_from_slice(data);
                if p.0.len() >= BUFFER_BYTES {
                    let _ = p.write_out();
                }
                Some(())
            })
            .ok()
            .flatten();
        if buffered.is_none() {
            let _ = emit(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static CAPTURED: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    }

    /// Keep what this test thread writes out (instead of printing it).
    pub(super) fn capture(data: &[u8]) -> Option<io::Result<()>> {
        CAPTURED
            .try_with(|c| {
                c.borrow_mut().as_mut().map(|c| {
                    c.extend_from_slice(data);
                    Ok(())
                })
            })
            .ok()
            .flatten()
    }

    fn written() -> Vec<u8> {
        CAPTURED.with(|c| c.borrow().clone().unwrap_or_default())
    }

    fn pending_len() -> Option<usize> {
        PENDING.with(|p| p.borrow().as_ref().map(|p| p.0.len()))
    }

    #[test]
    fn lines_wait_in_a_buffering_thread_until_flushed_or_full() {
        std::thread::spawn(|| {
            CAPTURED.with(|c| *c.borrow_mut() = Some(Vec::new()));
            // Not buffering: straight through.
            LogLine.write_all(b"first\n").unwrap();
            assert_eq!((pending_len(), written()), (None, b"first\n".to_vec()));
            let first = buffer_this_thread();
            use futures_util::FutureExt;
            assert!(first.notified().now_or_never().is_none(), "no line yet");
            LogLine.write_all(b"one line\n").unwrap();
            LogLine.write_all(b"two\n").unwrap();
            // The first line of a batch signals the flush task, once.
            assert!(first.notified().now_or_never().is_some());
            assert!(first.notified().now_or_never().is_none());
            assert_eq!(pending_len(), Some(13));
            assert_eq!(written(), b"first\n");
            flush_this_thread();
            assert_eq!(pending_len(), Some(0));
            assert_eq!(written(), b"first\none line\ntwo\n");
            // A full buffer is written at once, without waiting for the flush.
            let line = vec![b'x'; 1000];
            for _ in 0..BUFFER_BYTES / 1000 {
                LogLine.write_all(&line).unwrap();
            }
            assert_eq!(pending_len(), Some(BUFFER_BYTES / 1000 * 1000));
            LogLine.write_all(&line).unwrap();
            assert_eq!(pending_len(), Some(0));
            assert_eq!(written().len(), 19 + (BUFFER_BYTES / 1000 + 1) * 1000);
        })
        .join()
        .unwrap();
    }
}
