//! Resident memory and CPU time of a process, from /proc (Linux).

pub struct ProcStat {
    pub rss_mb: f64,
    pub cpu_seconds: f64,
}

/// Kernel clock ticks per second for /proc/<pid>/stat times; 100 on every Linux we run on.
const CLK_TCK: f64 = 100.0;

impl ProcStat {
    pub fn read(pid: u32) -> Option<ProcStat> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kb: f64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may contain spaces) start after ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some(ProcStat {
            rss_mb: rss_kb / 1024.0,
            cpu_seconds: (utime + stime) / CLK_TCK,
        })
    }
}
