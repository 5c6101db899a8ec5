//! Memory of the servers under test: the resident set size of their processes, sampled from
//! `/proc/PID/status` on a thread of its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Result};

/// The value in KiB of `field` (`VmRSS`, `VmHWM`, ...) in the text of a `/proc/PID/status`.
pub fn status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let mut words = rest.split_whitespace();
        let value = words.next()?.parse().ok()?;
        (words.next() == Some("kB")).then_some(value)
    })
}

fn read_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_kib(&status, field)
}

/// What the sampler saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RssReport {
    /// The largest sum of `VmRSS` over the processes in one sample, KiB.
    pub peak_sum_kib: u64,
    /// The sum of the processes' `VmHWM` (each one's peak RSS since it started) at the end, KiB.
    pub hwm_sum_kib: u64,
    /// Samples taken.
    pub samples: u64,
    /// Processes that had gone by the end.
    pub gone: Vec<u32>,
}

/// Fails unless every process exists and its status is readable.
pub fn check_pids(pids: &[u32]) -> Result<()> {
    for &pid in pids {
        if read_kib(pid, "VmRSS").is_none() {
            bail!("cannot read VmRSS of process {pid} from /proc/{pid}/status");
        }
    }
    Ok(())
}

/// Samples the summed RSS of some processes every interval until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(u64, u64)>,
    pids: Vec<u32>,
}

impl Sampler {
    /// Starts sampling `pids` (every one must exist and be readable now) every `interval`.
    pub fn start(pids: Vec<u32>, interval: Duration) -> Result<Sampler> {
        check_pids(&pids)?;
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let stop = stop.clone();
            let pids = pids.clone();
            std::thread::Builder::new()
                .name("rss-sampler".into())
                .spawn(move || {
                    let mut peak = 0u64;
                    let mut samples = 0u64;
                    loop {
                        let sum = pids.iter().filter_map(|&p| read_kib(p, "VmRSS")).sum();
                        peak = peak.max(sum);
                        samples += 1;
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        std::thread::park_timeout(interval);
                    }
                    (peak, samples)
                })?
        };
        Ok(Sampler { stop, handle, pids })
    }

    /// Takes a last sample and stops.
    pub fn stop(self) -> RssReport {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.thread().unpark();
        let (peak_sum_kib, samples) = self.handle.join().expect("the RSS sampler panicked");
        let mut hwm_sum_kib = 0;
        let mut gone = Vec::new();
        for &pid in &self.pids {
            match read_kib(pid, "VmHWM") {
                Some(kib) => hwm_sum_kib += kib,
                None => gone.push(pid),
            }
        }
        RssReport {
            peak_sum_kib,
            hwm_sum_kib,
            samples,
            gone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tpostgres\nVmPeak:\t  220000 kB\nVmHWM:\t   41234 kB\nVmRSS:\t   40960 kB\nThreads:\t1\n";

    #[test]
    fn reads_fields_of_proc_status() {
        assert_eq!(status_kib(STATUS, "VmRSS"), Some(40_960));
        assert_eq!(status_kib(STATUS, "VmHWM"), Some(41_234));
        assert_eq!(status_kib(STATUS, "VmSwap"), None);
        assert_eq!(status_kib(STATUS, "Threads"), None);
        assert_eq!(status_kib(STATUS, "Vm"), None);
    }

    #[test]
    fn samples_this_process() {
        let me = std::process::id();
        let sampler = Sampler::start(vec![me, me], Duration::from_millis(5)).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let report = sampler.stop();
        assert!(report.samples >= 2, "{report:?}");
        assert!(report.peak_sum_kib > 0);
        // The kernel updates VmHWM lazily (per-thread RSS counters), so it may trail a little.
        assert!(
            report.hwm_sum_kib * 11 / 10 >= report.peak_sum_kib,
            "{report:?}"
        );
        assert!(report.gone.is_empty());
        assert!(Sampler::start(vec![u32::MAX], Duration::from_millis(5)).is_err());
        assert!(check_pids(&[me]).is_ok());
        assert!(check_pids(&[me, u32::MAX]).is_err());
    }
}
