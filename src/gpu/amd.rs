//! AMD GPUs through the amdgpu driver's sysfs attributes: `gpu_busy_percent`,
//! `mem_info_vram_used` and `mem_info_vram_total` of each card whose PCI vendor is 0x1002.

use std::path::Path;

use super::sysfs::{self, VENDOR_AMD};
use super::{DeviceSample, Vendor};
use crate::metrics::GpuReading;

/// One sample of every AMD card under `sysfs_root`; other vendors' cards are ignored.
pub(crate) fn sample(sysfs_root: &Path) -> Vec<DeviceSample> {
    sysfs::cards(sysfs_root)
        .into_iter()
        .filter(|card| card.vendor.as_deref() == Some(VENDOR_AMD))
        .map(|card| {
            let read = |file: &str| sysfs::read_trimmed(&card.device_dir.join(file));
            DeviceSample {
                device: card.name,
                vendor: Vendor::Amd,
                reading: reading(
                    read("gpu_busy_percent").as_deref(),
                    read("mem_info_vram_used").as_deref(),
                    read("mem_info_vram_total").as_deref(),
                ),
            }
        })
        .collect()
}

/// The figures from the attributes' text; an absent or garbled attribute gives no figure.
pub(crate) fn reading(busy_percent: Option<&str>, vram_used: Option<&str>, vram_total: Option<&str>) -> GpuReading {
    let number = |text: Option<&str>| text.and_then(|t| t.trim().parse::<u64>().ok());
    GpuReading {
        utilization_percent: number(busy_percent).filter(|p| *p <= 100).map(|p| p as f64),
        vram_used_bytes: number(vram_used),
        vram_total_bytes: number(vram_total),
        encoder_utilization_percent: None,
        encoder_sessions: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::sysfs::fake;
    use super::*;

    #[test]
    fn attributes_parse_to_figures() {
        let r = reading(Some("37\n"), Some("1073741824"), Some("8589934592\n"));
        assert_eq!(r.utilization_percent, Some(37.0));
        assert_eq!(r.vram_used_bytes, Some(1 << 30));
        assert_eq!(r.vram_total_bytes, Some(8 << 30));
        assert_eq!(r.encoder_utilization_percent, None);
        assert_eq!(r.encoder_sessions, None);
    }

    #[test]
    fn garbled_or_missing_attributes_give_no_figure() {
        let r = reading(Some("busy"), None, Some("-1"));
        assert_eq!(r, GpuReading::default());
        // Above 100 % is not a share.
        assert_eq!(reading(Some("250"), None, None).utilization_percent, None);
    }

    #[test]
    fn reads_amd_cards_of_a_fake_sysfs_and_ignores_the_others() {
        let root = tempfile::tempdir().expect("tempdir");
        fake::card(
            root.path(),
            "card1",
            &[
                ("vendor", "0x1002\n"),
                ("gpu_busy_percent", "42\n"),
                ("mem_info_vram_used", "536870912\n"),
                ("mem_info_vram_total", "4294967296\n"),
            ],
        );
        fake::render_node(root.path(), "card1", "renderD129");
        // An Intel iGPU beside it, with attributes an AMD card would have: must be ignored.
        fake::card(
            root.path(),
            "card0",
            &[("vendor", "0x8086\n"), ("gpu_busy_percent", "99\n")],
        );
        // An older AMD APU kernel without the busy attribute.
        fake::card(
            root.path(),
            "card2",
            &[("vendor", "0x1002\n"), ("mem_info_vram_total", "536870912\n")],
        );
        fake::card(
            root.path(),
            "card1-DP-2",
            &[("vendor", "0x1002\n"), ("gpu_busy_percent", "5\n")],
        );

        let samples = sample(root.path());
        assert_eq!(
            samples,
            [
                DeviceSample {
                    device: "card1".to_owned(),
                    vendor: Vendor::Amd,
                    reading: GpuReading {
                        utilization_percent: Some(42.0),
                        vram_used_bytes: Some(512 << 20),
                        vram_total_bytes: Some(4 << 30),
                        encoder_utilization_percent: None,
                        encoder_sessions: None,
                    },
                },
                DeviceSample {
                    device: "card2".to_owned(),
                    vendor: Vendor::Amd,
                    reading: GpuReading {
                        vram_total_bytes: Some(512 << 20),
                        ..GpuReading::default()
                    },
                },
            ]
        );
    }

    #[test]
    fn no_sysfs_gives_no_samples() {
        let root = tempfile::tempdir().expect("tempdir");
        assert!(sample(root.path()).is_empty());
    }
}
