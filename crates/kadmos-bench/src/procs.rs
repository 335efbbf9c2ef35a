//! Child processes (pinned, watched, always killed) and the figures read
//! from /proc about them.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Pins the calling thread (and the threads it creates later) to one core.
pub fn pin_current_thread(core: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it; pid 0 is the
    // calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Number of CPUs this process may run on.
pub fn online_cpus() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a process (all its threads), in seconds.
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// CPU time of a process's live threads, in seconds: to the nanosecond from the scheduler's
/// statistics (/proc/PID/task/*/schedstat, the first field) where the kernel keeps them, else
/// utime + stime to the clock tick. A window of milliseconds needs the former.
pub fn precise_cpu_seconds(pid: u32) -> io::Result<f64> {
    let mut nanos = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        let Ok(text) = std::fs::read_to_string(&path) else {
            // A thread that exited meanwhile: its time is gone with it.
            continue;
        };
        match text.split_whitespace().next().and_then(|f| f.parse::<u64>().ok()) {
            Some(n) => nanos += n,
            None => return cpu_seconds(pid),
        }
    }
    if nanos == 0 {
        return cpu_seconds(pid);
    }
    Ok(nanos as f64 * 1e-9)
}

/// utime + stime of the calling thread, in seconds.
pub fn thread_cpu_seconds() -> io::Result<f64> {
    stat_cpu_seconds("/proc/thread-self/stat")
}

fn stat_cpu_seconds(path: &str) -> io::Result<f64> {
    let text = std::fs::read_to_string(path)?;
    // The command name may hold spaces and parentheses: fields follow the
    // last ')'. After it come field 3 (state), ..., 14 (utime), 15 (stime).
    let rest =
        text.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> io::Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|v| v as f64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad stat field"))
    };
    Ok((num(11)? + num(12)?) / clock_ticks_per_sec())
}

/// (busy, total) jiffies of one core since boot, from /proc/stat.
pub fn core_jiffies(core: usize) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{core}");
    let line = text.lines().find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).take(8).filter_map(|f| f.parse().ok()).collect();
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().sum();
    Some((total - v[3] - v[4], total))
}

/// Busy share (%) of a core between two `core_jiffies` samples.
pub fn core_busy_pct(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = (a?, b?);
    let dt = t1.checked_sub(t0)?;
    (dt > 0).then(|| 100.0 * b1.saturating_sub(b0) as f64 / dt as f64)
}

/// Peak resident set size (VmHWM) of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> io::Result<u64> {
    status_kib(pid, "VmHWM:")
}

/// A kB figure of /proc/PID/status (`VmRSS:`, `VmHWM:`, ...).
pub fn status_kib(pid: u32, field: &str) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("no {field}")))
}

/// Number of threads of a process.
pub fn thread_count(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok())
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> io::Result<Self> {
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        for n in 0..1000u32 {
            let p = base.join(format!("{prefix}-{}-{nanos}-{n}", std::process::id()));
            match std::fs::create_dir(&p) {
                Ok(()) => return Ok(TempDir(p)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(io::ErrorKind::AlreadyExists, "no free temp dir name"))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server child process. Killed (SIGKILL) and reaped on drop unless it
/// has already been stopped, so no exit path — error, panic — leaves it
/// running.
pub struct Server {
    pub name: String,
    child: Child,
    output: Arc<Mutex<VecDeque<String>>>,
}

const KEEP_LINES: usize = 40;

impl Server {
    /// Spawns `argv` pinned to `core` (via sched_setaffinity in the child,
    /// before exec, so the pid we hold is the server's own). Its stdout and
    /// stderr are drained by two threads; the first `127.0.0.1:PORT` seen
    /// in either is sent on the returned channel.
    pub fn spawn(name: &str, argv: &[String], core: Option<usize>) -> io::Result<(Self, mpsc::Receiver<SocketAddr>)> {
        let (prog, args) =
            argv.split_first().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let mut cmd = Command::new(prog);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // SAFETY: the closure only makes plain system calls (prctl,
        // sched_setaffinity), which are safe between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Die with us even if we are SIGKILLed.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                match core {
                    Some(core) => pin_current_thread(core),
                    None => Ok(()),
                }
            });
        }
        let mut child = cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("cannot start {prog}: {e}")))?;
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            drain(out, tx.clone(), output.clone());
        }
        if let Some(err) = child.stderr.take() {
            drain(err, tx, output.clone());
        }
        Ok((Server { name: name.to_string(), child, output }, rx))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the child has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last lines it printed, for error messages.
    pub fn tail(&self) -> String {
        let lines = self.output.lock().map(|l| l.clone()).unwrap_or_default();
        lines.into_iter().collect::<Vec<_>>().join("\n")
    }

    /// Waits for the address the server prints, up to `timeout`.
    pub fn wait_addr(&mut self, rx: &mpsc::Receiver<SocketAddr>, timeout: Duration) -> Result<SocketAddr, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(a) => return Ok(a),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    thread::sleep(Duration::from_millis(50));
                }
            }
            if let Some(st) = self.exited() {
                return Err(format!(
                    "{} exited ({st}) before printing 127.0.0.1:PORT; its output:\n{}",
                    self.name,
                    self.tail()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} printed no 127.0.0.1:PORT within {:?}; its output:\n{}",
                    self.name,
                    timeout,
                    self.tail()
                ));
            }
        }
    }

    /// SIGTERM, then SIGKILL after `grace`. Returns how it ended.
    pub fn stop(&mut self, grace: Duration) -> String {
        if let Some(st) = self.exited() {
            return format!("had already exited ({st})");
        }
        // SAFETY: kill with a pid we spawned and have not reaped yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(st) = self.exited() {
                return format!("stopped on SIGTERM ({st})");
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        format!("killed after {grace:?} without exiting on SIGTERM")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn drain<R: Read + Send + 'static>(r: R, tx: mpsc::Sender<SocketAddr>, keep: Arc<Mutex<VecDeque<String>>>) {
    thread::spawn(move || {
        let mut sent = false;
        let mut reader = BufReader::new(r);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
            if !sent {
                if let Some(a) = find_loopback_addr(&line) {
                    let _ = tx.send(a);
                    sent = true;
                }
            }
            if let Ok(mut k) = keep.lock() {
                if k.len() == KEEP_LINES {
                    k.pop_front();
                }
                k.push_back(line);
            }
        }
    });
}

/// The first `127.0.0.1:NNNN` in a line.
pub fn find_loopback_addr(line: &str) -> Option<SocketAddr> {
    const P: &str = "127.0.0.1:";
    let mut rest = line;
    while let Some(i) = rest.find(P) {
        let after = &rest[i + P.len()..];
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(port) = digits.parse::<u16>() {
            if port != 0 {
                return Some(SocketAddr::from(([127, 0, 0, 1], port)));
            }
        }
        rest = after;
    }
    None
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_udp_port() -> io::Result<u16> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
    Ok(s.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listening_lines() {
        assert_eq!(
            find_loopback_addr("kadmos: listening on 127.0.0.1:6881 (udp)"),
            Some("127.0.0.1:6881".parse().unwrap())
        );
        assert_eq!(find_loopback_addr("listening 127.0.0.1:40000"), Some("127.0.0.1:40000".parse().unwrap()));
        assert_eq!(find_loopback_addr("bind 127.0.0.1:0 then 127.0.0.1:7").unwrap().port(), 7);
        assert_eq!(find_loopback_addr("nothing here"), None);
    }

    #[test]
    fn reads_own_proc_figures() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(thread_cpu_seconds().unwrap() >= 0.0);
        assert!(peak_rss_kib(pid).unwrap() > 0);
        let (busy, total) = core_jiffies(0).unwrap();
        assert!(busy <= total);
    }
}
