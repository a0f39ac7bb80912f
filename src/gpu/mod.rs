//! GPU and host statistics: one named task samples NVIDIA (NVML), AMD (sysfs) and the host
//! (sysinfo) every `gpu.stats_interval`, takes Intel samples from supervised `intel_gpu_top -J`
//! children, and writes them to the `xg2g_gpu_*`, `xg2g_vram_*` and `xg2g_host_*` metrics.
//!
//! A source that is absent (no driver, no tool, no card) gives no series and no error. The
//! parsers and mappings (`intel`, `amd::reading`, `nvidia::sample_device`) are pure; IO stays in
//! the samplers and in this task.

mod amd;
mod host;
mod intel;
mod intel_top;
mod nvidia;
mod sysfs;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::metrics::{GpuReading, Metrics};
use host::{HostSample, HostSampler};
use intel_top::{IntelTop, IntelUpdate};
use nvidia::Nvidia;

/// How long the task gets to stop after the shutdown token is cancelled.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest pause before `intel_gpu_top` is started again.
const INTEL_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(300));

/// A GPU's maker, the `vendor` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Vendor {
    Nvidia,
    Intel,
    Amd,
}

impl Vendor {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Nvidia => "nvidia",
            Self::Intel => "intel",
            Self::Amd => "amd",
        }
    }
}

/// One device's figures from one sample.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeviceSample {
    /// The device label: `nvidia0`, `card0`.
    pub device: String,
    pub vendor: Vendor,
    pub reading: GpuReading,
}

/// Where the collector looks; the system's paths in production, fakes in tests.
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    pub sysfs_root: PathBuf,
    pub dev_root: PathBuf,
    /// `intel_gpu_top`, when installed.
    pub intel_gpu_top: Option<PathBuf>,
    /// Whether to try NVML.
    pub nvml: bool,
}

impl Sources {
    pub(crate) fn system() -> Self {
        Self {
            sysfs_root: PathBuf::from("/sys"),
            dev_root: PathBuf::from("/dev"),
            intel_gpu_top: std::env::var_os("PATH").and_then(|path| find_program("intel_gpu_top", &path)),
            nvml: true,
        }
    }

    /// One `intel_gpu_top` per Intel card that has a render node in the device folder; none
    /// when the tool is not installed.
    fn intel_children(&self, period: Duration) -> Vec<IntelTop> {
        let Some(program) = &self.intel_gpu_top else {
            return Vec::new();
        };
        let dri = self.dev_root.join("dri");
        sysfs::cards(&self.sysfs_root)
            .into_iter()
            .filter(|card| card.vendor.as_deref() == Some(sysfs::VENDOR_INTEL))
            .filter(|card| card.render_node.as_ref().is_some_and(|node| dri.join(node).exists()))
            .map(|card| IntelTop {
                program: program.clone(),
                node: dri.join(&card.name),
                device: card.name,
                period,
                silence: (period * 10).max(Duration::from_secs(10)),
                initial_backoff: INTEL_BACKOFF.0,
                max_backoff: INTEL_BACKOFF.1,
            })
            .collect()
    }
}

/// The first executable file named `name` in the `PATH`-style list `path`.
fn find_program(name: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::split_paths(path).map(|dir| dir.join(name)).find(|candidate| {
        std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The running statistics task. It stops when the shutdown token is cancelled.
#[derive(Debug)]
pub struct GpuStats {
    task: JoinHandle<()>,
    rounds: watch::Receiver<u64>,
}

impl GpuStats {
    /// Counts completed sample rounds; changes after each one.
    pub fn rounds(&self) -> watch::Receiver<u64> {
        self.rounds.clone()
    }

    /// Waits, bounded, for the task to end after the shutdown token was cancelled; `false`
    /// when it did not end in time.
    pub async fn join(self) -> bool {
        match tokio::time::timeout(STOP_TIMEOUT, self.task).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::warn!(task = "gpu-stats", %error, "GPU statistics task ended abnormally.");
                true
            }
            Err(_) => {
                tracing::warn!(task = "gpu-stats", "GPU statistics task did not stop in time.");
                false
            }
        }
    }
}

/// Starts sampling the system's GPUs and host every `interval` (at least 200 ms, see config).
pub fn spawn(interval: Duration, metrics: Arc<Metrics>, shutdown: CancellationToken) -> GpuStats {
    spawn_with(Sources::system(), interval, metrics, shutdown)
}

pub(crate) fn spawn_with(
    sources: Sources,
    interval: Duration,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> GpuStats {
    let (rounds_tx, rounds) = watch::channel(0);
    let collector = Collector {
        sources,
        interval,
        metrics,
        rounds: rounds_tx,
    };
    let span = tracing::info_span!("gpu-stats");
    let task = tokio::spawn(collector.run(shutdown).instrument(span));
    GpuStats { task, rounds }
}

struct Collector {
    sources: Sources,
    interval: Duration,
    metrics: Arc<Metrics>,
    rounds: watch::Sender<u64>,
}

/// What one off-thread sample gives back: the sampler (it keeps the previous CPU counters),
/// the host figures and the NVIDIA and AMD devices.
struct Round {
    sampler: HostSampler,
    host: HostSample,
    devices: Vec<DeviceSample>,
}

impl Collector {
    async fn run(self, shutdown: CancellationToken) {
        let interval = self.interval;
        let intel = self.sources.intel_children(interval);
        if intel.is_empty() {
            tracing::debug!(
                tool = self.sources.intel_gpu_top.is_some(),
                "No Intel GPU to sample with intel_gpu_top."
            );
        }
        let (intel_tx, mut intel_rx) = mpsc::channel::<IntelUpdate>(16);
        let children: Vec<JoinHandle<()>> = intel
            .into_iter()
            .map(|child| {
                let span = tracing::info_span!("intel-gpu-top", device = %child.device);
                tokio::spawn(
                    child
                        .supervise(intel_tx.clone(), shutdown.child_token())
                        .instrument(span),
                )
            })
            .collect();
        drop(intel_tx);

        let try_nvml = self.sources.nvml;
        let started = off_thread(move || {
            let nvidia = if try_nvml { Nvidia::init().map(Arc::new) } else { None };
            (nvidia, HostSampler::new())
        })
        .await;
        let (nvidia, mut sampler) = match started {
            Some((nvidia, sampler)) => (nvidia, Some(sampler)),
            None => (None, None),
        };
        tracing::debug!(
            interval_ms = interval.as_millis() as u64,
            "Sampling GPU and host statistics."
        );

        let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut intel_latest: BTreeMap<String, (Instant, GpuReading)> = BTreeMap::new();
        let mut shown: BTreeSet<(String, Vendor)> = BTreeSet::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(update) = intel_rx.recv() => {
                    intel_latest.insert(update.device, (Instant::now(), update.reading));
                }
                _ = ticker.tick() => {
                    let nvidia = nvidia.clone();
                    let sysfs_root = self.sources.sysfs_root.clone();
                    let host_sampler = sampler.take().unwrap_or_else(HostSampler::new);
                    let round = off_thread(move || sample_round(nvidia.as_deref(), &sysfs_root, host_sampler)).await;
                    let Some(Round { sampler: back, host, mut devices }) = round else {
                        continue;
                    };
                    sampler = Some(back);
                    // An Intel figure older than a few periods belongs to a child that stopped.
                    intel_latest.retain(|_, (at, _)| at.elapsed() <= interval * 3);
                    devices.extend(intel_latest.iter().map(|(device, (_, reading))| DeviceSample {
                        device: device.clone(),
                        vendor: Vendor::Intel,
                        reading: reading.clone(),
                    }));
                    record(&self.metrics, &mut shown, &devices, &host);
                    self.rounds.send_modify(|n| *n += 1);
                }
            }
        }
        for child in children {
            if tokio::time::timeout(STOP_TIMEOUT, child).await.is_err() {
                tracing::warn!("intel_gpu_top supervisor did not stop in time.");
            }
        }
        tracing::debug!("GPU statistics stopped.");
    }
}

/// Runs blocking work (NVML, sysfs, /proc) on the blocking pool, under the caller's log
/// subscriber. `None` if it panicked.
async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let span = tracing::Span::current();
    let result =
        tokio::task::spawn_blocking(move || tracing::dispatcher::with_default(&dispatch, || span.in_scope(work))).await;
    match result {
        Ok(value) => Some(value),
        Err(error) => {
            tracing::warn!(%error, "GPU statistics sample failed.");
            None
        }
    }
}

fn sample_round(nvidia: Option<&Nvidia>, sysfs_root: &Path, mut sampler: HostSampler) -> Round {
    let mut devices = nvidia.map(Nvidia::sample).unwrap_or_default();
    devices.extend(amd::sample(sysfs_root));
    let host = sampler.sample();
    Round { sampler, host, devices }
}

/// Writes one round to the metrics and removes the series of devices no longer seen. `shown`
/// is the collector's record of the devices it wrote last time.
fn record(metrics: &Metrics, shown: &mut BTreeSet<(String, Vendor)>, devices: &[DeviceSample], host: &HostSample) {
    let now: BTreeSet<(String, Vendor)> = devices.iter().map(|d| (d.device.clone(), d.vendor)).collect();
    for (device, vendor) in shown.difference(&now) {
        metrics.gpu.gpu_device_gone(device, vendor.as_str());
    }
    for sample in devices {
        metrics
            .gpu
            .gpu_device(&sample.device, sample.vendor.as_str(), &sample.reading);
    }
    *shown = now;
    metrics.gpu.host_cpu(host.cpu_percent);
    metrics.gpu.host_memory(host.memory_used_bytes, host.memory_total_bytes);
}

#[cfg(test)]
mod tests;
