//! DRM cards as sysfs lists them (`class/drm/cardN`): name, PCI vendor and render node. The
//! sysfs root is a parameter so tests read a fake tree.

use std::path::{Path, PathBuf};

pub(crate) const VENDOR_AMD: &str = "0x1002";
pub(crate) const VENDOR_INTEL: &str = "0x8086";

/// One DRM card (`card0`), not a connector (`card0-HDMI-A-1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DrmCard {
    /// `card0`: the stable short name used as the device label.
    pub name: String,
    /// `…/class/drm/card0/device`: the PCI device's attributes.
    pub device_dir: PathBuf,
    /// The PCI vendor id as sysfs writes it (`0x1002`), lower case.
    pub vendor: Option<String>,
    /// The card's render node (`renderD128`), if it has one.
    pub render_node: Option<String>,
}

/// Every DRM card under `sysfs_root`, by card number. A missing `class/drm` gives none.
pub(crate) fn cards(sysfs_root: &Path) -> Vec<DrmCard> {
    let drm = sysfs_root.join("class/drm");
    let Ok(entries) = std::fs::read_dir(&drm) else {
        return Vec::new();
    };
    let mut cards: Vec<(u32, DrmCard)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let number = card_number(&name)?;
            let device_dir = drm.join(&name).join("device");
            let vendor = read_trimmed(&device_dir.join("vendor")).map(|v| v.to_ascii_lowercase());
            let render_node = render_node(&device_dir);
            Some((
                number,
                DrmCard {
                    name,
                    device_dir,
                    vendor,
                    render_node,
                },
            ))
        })
        .collect();
    cards.sort_by_key(|(number, _)| *number);
    cards.into_iter().map(|(_, card)| card).collect()
}

/// `card0` → 0; connectors (`card0-DP-1`) and render nodes → `None`.
pub(crate) fn card_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("card")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The `renderD*` entry of the device's `drm` folder.
fn render_node(device_dir: &Path) -> Option<String> {
    let mut nodes: Vec<String> = std::fs::read_dir(device_dir.join("drm"))
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.starts_with("renderD"))
        .collect();
    nodes.sort();
    nodes.into_iter().next()
}

/// A sysfs attribute's content without the trailing newline; `None` when unreadable or empty.
pub(crate) fn read_trimmed(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

#[cfg(test)]
pub(crate) mod fake {
    //! A fake sysfs tree for tests.

    use std::path::Path;

    /// Writes `class/drm/<card>/device/<file>` for each `(file, content)`.
    pub(crate) fn card(root: &Path, card: &str, files: &[(&str, &str)]) {
        let device = root.join("class/drm").join(card).join("device");
        std::fs::create_dir_all(&device).expect("create fake card");
        for (file, content) in files {
            let path = device.join(file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("create fake folder");
            }
            std::fs::write(path, content).expect("write fake attribute");
        }
    }

    /// Adds `class/drm/<card>/device/drm/<node>`, as the kernel links a card's render node.
    pub(crate) fn render_node(root: &Path, card: &str, node: &str) {
        let dir = root.join("class/drm").join(card).join("device/drm").join(node);
        std::fs::create_dir_all(dir).expect("create fake render node");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_names() {
        assert_eq!(card_number("card0"), Some(0));
        assert_eq!(card_number("card12"), Some(12));
        assert_eq!(card_number("card0-HDMI-A-1"), None);
        assert_eq!(card_number("card"), None);
        assert_eq!(card_number("renderD128"), None);
        assert_eq!(card_number("version"), None);
    }

    #[test]
    fn lists_cards_in_number_order_with_vendor_and_render_node() {
        let root = tempfile::tempdir().expect("tempdir");
        fake::card(root.path(), "card10", &[("vendor", "0x10DE\n")]);
        fake::card(root.path(), "card2", &[("vendor", "0x8086\n")]);
        fake::render_node(root.path(), "card2", "renderD129");
        fake::card(root.path(), "card2-DP-1", &[("status", "connected\n")]);
        fake::card(root.path(), "card3", &[]);
        let cards = cards(root.path());
        let summary: Vec<_> = cards
            .iter()
            .map(|c| (c.name.as_str(), c.vendor.as_deref(), c.render_node.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                ("card2", Some("0x8086"), Some("renderD129")),
                ("card3", None, None),
                ("card10", Some("0x10de"), None),
            ]
        );
    }

    #[test]
    fn no_drm_class_means_no_cards() {
        let root = tempfile::tempdir().expect("tempdir");
        assert!(cards(root.path()).is_empty());
        assert!(cards(&root.path().join("missing")).is_empty());
    }
}
