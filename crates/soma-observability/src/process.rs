//! Process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...), with the
//! names and help texts of the Prometheus client libraries, written straight into the exposition.
//!
//! A scrape costs one read of `/proc/self/stat`, one listing of `/proc/self/fd` and one
//! `getrlimit`; the start time is read once. On other systems nothing is written.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::fmt::Write as _;

use crate::exposition::Format;

/// What a scrape reads, taken from `/proc/self/stat`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    cpu_seconds: f64,
    threads: u64,
    virtual_bytes: u64,
    resident_bytes: u64,
    start_ticks: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) may hold spaces, parentheses and
/// bytes that are not UTF-8 (it is cut at 15 bytes, maybe inside a character), so fields are
/// counted from its closing parenthesis (`man 5 proc`), and only what follows is read as text.
fn parse_stat(stat: &[u8], ticks_per_second: u64, page_size: u64) -> Option<Stat> {
    let name_end = stat.iter().rposition(|&b| b == b')')?;
    let after_name = std::str::from_utf8(&stat[name_end + 1..]).ok()?;
    // Fields from 3 (`state`) on; utime is field 14, stime 15, num_threads 20, starttime 22,
    // vsize 23, rss 24.
    let mut fields = after_name.split_ascii_whitespace();
    let mut field = |n: usize| -> Option<u64> { fields.nth(n)?.parse().ok() };
    let utime = field(11)?;
    let stime = field(0)?;
    let threads = field(4)?;
    let start_ticks = field(1)?;
    let virtual_bytes = field(0)?;
    let resident_pages = field(0)?;
    #[allow(clippy::cast_precision_loss)] // CPU ticks stay far below 2^52
    let cpu_seconds = (utime + stime) as f64 / ticks_per_second as f64;
    Some(Stat {
        cpu_seconds,
        threads,
        virtual_bytes,
        resident_bytes: resident_pages * page_size,
        start_ticks,
    })
}

/// Reads the process's own metrics at every scrape.
#[derive(Debug)]
pub(crate) struct ProcessMetrics {
    /// Seconds since the Unix epoch, read once (it never changes).
    start_time_seconds: Option<f64>,
}

impl ProcessMetrics {
    pub(crate) fn new() -> Self {
        Self {
            start_time_seconds: start_time_seconds(),
        }
    }

    /// Appends the process families to `out`.
    #[cfg(target_os = "linux")]
    pub(crate) fn write(&self, out: &mut String, format: Format) {
        let stat = read_stat().and_then(|raw| parse_stat(&raw, ticks_per_second(), page_size()));
        if let Some(stat) = stat {
            family(
                out,
                format,
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                "counter",
                stat.cpu_seconds,
            );
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            // The listing's own descriptor is one of the entries, as in other clients.
            family(
                out,
                format,
                "process_open_fds",
                "Number of open file descriptors.",
                "gauge",
                entries.count(),
            );
        }
        if let Some(max) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
            family(
                out,
                format,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                "gauge",
                max,
            );
        }
        if let Some(stat) = stat {
            family(
                out,
                format,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                "gauge",
                stat.virtual_bytes,
            );
            family(
                out,
                format,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                "gauge",
                stat.resident_bytes,
            );
        }
        if let Some(start) = self.start_time_seconds {
            family(
                out,
                format,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                "gauge",
                start,
            );
        }
        if let Some(stat) = stat {
            family(
                out,
                format,
                "process_threads",
                "Number of OS threads in the process.",
                "gauge",
                stat.threads,
            );
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub(crate) fn write(&self, _out: &mut String, _format: Format) {}
}

/// `/proc/self/stat` (a few hundred bytes) in one `read`, without the size query of
/// `fs::read_to_string`.
#[cfg(target_os = "linux")]
fn read_stat() -> Option<Vec<u8>> {
    use std::io::Read as _;
    let mut buf = [0u8; 4096];
    let mut file = std::fs::File::open("/proc/self/stat").ok()?;
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(_) => return None,
        }
    }
    Some(buf[..len].to_vec())
}

fn family(
    out: &mut String,
    format: Format,
    name: &str,
    help: &str,
    kind: &str,
    value: impl std::fmt::Display,
) {
    // OpenMetrics names a counter's family without the `_total` of its sample.
    let family = match (format, kind) {
        (Format::OpenMetrics, "counter") => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    let _ = write!(
        out,
        "# HELP {family} {help}\n# TYPE {family} {kind}\n{name} {value}\n"
    );
}

#[cfg(target_os = "linux")]
fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

#[cfg(target_os = "linux")]
fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// The boot time (`btime` in `/proc/stat`) plus the process's start, in ticks after boot.
#[cfg(target_os = "linux")]
fn start_time_seconds() -> Option<f64> {
    let stat = parse_stat(&read_stat()?, ticks_per_second(), page_size())?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let boot: u64 = boot
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    #[allow(clippy::cast_precision_loss)] // seconds since 1970 and ticks since boot: exact
    Some(boot as f64 + stat.start_ticks as f64 / ticks_per_second() as f64)
}

#[cfg(not(target_os = "linux"))]
fn start_time_seconds() -> Option<f64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with spaces and a parenthesis, as `man 5 proc` warns.
        let text = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    250 50 0 0 20 0 7 0 12345 104857600 2560 18446744073709551615 \
                    1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let stat = parse_stat(text.as_bytes(), 100, 4096).unwrap();
        assert_eq!(
            stat,
            Stat {
                cpu_seconds: 3.0,
                threads: 7,
                virtual_bytes: 104_857_600,
                resident_bytes: 2560 * 4096,
                start_ticks: 12345,
            }
        );
        assert_eq!(parse_stat(b"garbage", 100, 4096), None);
        // A name cut inside a multi-byte character is not UTF-8; the fields still parse.
        let mut cut = b"4242 (a\xd0\xbc\xd0) S".to_vec();
        cut.extend_from_slice(&text.as_bytes()[text.find(") S").unwrap() + 3..]);
        assert_eq!(parse_stat(&cut, 100, 4096), Some(stat));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_running_process_reports_every_family() {
        let mut out = String::new();
        ProcessMetrics::new().write(&mut out, Format::Prometheus);
        for name in [
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_max_fds",
            "process_virtual_memory_bytes",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "process_threads",
        ] {
            let line = out
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing in\n{out}"));
            let value: f64 = line[name.len() + 1..].parse().unwrap();
            assert!(value > 0.0 || name == "process_cpu_seconds_total", "{line}");
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = ProcessMetrics::new().start_time_seconds.unwrap();
        assert!(
            start <= now && now - start < 24.0 * 3600.0 * 365.0,
            "{start}"
        );
    }
}
