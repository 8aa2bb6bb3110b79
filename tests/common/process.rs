//! Helpers for tests that start the built binary (or another program) as a child process.

use std::process::Child;

/// Kills and reaps the child when dropped, also when the test panics.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP port free on 127.0.0.1 right now (bound, read, released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The text of a log file, or a note saying why it cannot be read (for assertion messages).
pub fn read_log(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// Run `cmd` to completion with stdout and stderr into `log`, killing it after `timeout`:
/// (its exit status, `None` when killed; the log's text).
pub fn run_logged(
    mut cmd: std::process::Command,
    log: &std::path::Path,
    timeout: std::time::Duration,
) -> (Option<std::process::ExitStatus>, String) {
    use std::process::Stdio;
    let out = std::fs::File::create(log).unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    (status, read_log(log))
}
