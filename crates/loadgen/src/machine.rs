//! What machine a result was measured on, and what a process costs it
//! (read from `/proc`, so Linux only; elsewhere the fields stay empty).

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// The machine and the code a result belongs to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineInfo {
    pub nproc: usize,
    pub cpu_model: Option<String>,
    pub memory_mb: Option<u64>,
    pub kernel: Option<String>,
    pub git_commit: Option<String>,
    /// The work tree had changes not in `git_commit`.
    pub git_dirty: Option<bool>,
    /// Load average over the last minute when the result was taken: other
    /// work on the machine (builds) skews a benchmark.
    pub loadavg_1m: Option<f64>,
}

impl MachineInfo {
    pub fn read() -> MachineInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        MachineInfo {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpu_model(&cpuinfo),
            memory_mb: kib_field(&meminfo, "MemTotal:").map(|kib| kib / 1024),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_owned()),
            git_commit: git(&["rev-parse", "HEAD"]),
            git_dirty: git(&["status", "--porcelain", "--untracked-files=no"])
                .map(|s| !s.is_empty()),
            loadavg_1m: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok()),
        }
    }
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The first `model name` of `/proc/cpuinfo`.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

/// A `Name:   123 kB` field of `/proc/meminfo` or `/proc/<pid>/status`.
pub fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|line| line.starts_with(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Memory of a running process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Resident now (VmRSS), MiB.
    pub rss_mb: f64,
    /// Highest resident so far (VmHWM), MiB.
    pub hwm_mb: f64,
}

pub fn memory_of(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Memory {
        rss_mb: kib_field(&status, "VmRSS:")? as f64 / 1024.0,
        hwm_mb: kib_field(&status, "VmHWM:")? as f64 / 1024.0,
    })
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU seconds of this process.
pub fn own_cpu_seconds() -> Option<f64> {
    cpu_seconds(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// utime + stime of a `/proc/<pid>/stat` line, in seconds (USER_HZ = 100
/// on every Linux this runs on).
pub fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'. utime and stime are fields 14 and 15 of the line, so the
    // 12th and 13th after the name.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Whether `/proc/<pid>` exists.
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_model_and_memory_fields() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        let status = "Name:\tbakery\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(kib_field(status, "VmRSS:"), Some(40960));
        assert_eq!(kib_field(status, "VmHWM:"), Some(51200));
        assert_eq!(kib_field(status, "VmSwap:"), None);
    }

    #[test]
    fn cpu_seconds_survive_odd_command_names() {
        let stat = "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(cpu_seconds(stat), Some(3.0));
    }

    #[test]
    fn this_process_is_measurable() {
        let me = std::process::id();
        assert!(alive(me));
        let memory = memory_of(me).expect("own /proc status");
        assert!(memory.rss_mb > 0.0 && memory.hwm_mb >= memory.rss_mb);
        assert!(own_cpu_seconds().is_some());
    }
}
