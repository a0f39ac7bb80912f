//! The demo's picons: small solid-colour PNGs, encoded here (stored deflate, CRC-32, Adler-32)
//! for the channels that have one; the others have none, as on many real boxes.

use std::sync::OnceLock;

use crate::model::ServiceRef;

/// Channels with a picon: Das Erste HD, ORF1 HD and Ö1. The SD channels have none.
const WITH_PICON: [&str; 3] = [
    "1:0:19:283D:3FB:1:C00000:0:0:0:",
    "1:0:19:132F:3EF:1:C00000:0:0:0:",
    "1:0:2:2F1C:441:1:C00000:0:0:0:",
];
const SIDE: u32 = 32;

/// The PNG served as `/picon/<ref with '_'>.png`, if the channel has one.
pub(crate) fn picon(file_name: &str) -> Option<&'static [u8]> {
    static PNGS: OnceLock<Vec<(ServiceRef, Vec<u8>)>> = OnceLock::new();
    let reference = file_name.strip_suffix(".png")?;
    // Picon files name the reference with '_' and without the trailing ':'.
    let service_ref: ServiceRef = format!("{}:", reference.replace('_', ":")).parse().ok()?;
    if service_ref.picon_name() != reference {
        return None;
    }
    let pngs = PNGS.get_or_init(|| {
        WITH_PICON
            .iter()
            .map(|r| {
                let service_ref: ServiceRef = r.parse().expect("demo references are valid");
                let sid = u32::from(service_ref.service_id());
                let colour = [(sid >> 8) as u8, sid as u8, 0x80];
                (service_ref, solid_png(SIDE, SIDE, colour))
            })
            .collect()
    });
    pngs.iter()
        .find(|(r, _)| *r == service_ref)
        .map(|(_, png)| png.as_slice())
}

/// An 8-bit RGB PNG of one colour.
fn solid_png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    // Each row: filter type 0 (none), then the pixels.
    let row: Vec<u8> = std::iter::once(0).chain(rgb.repeat(width as usize)).collect();
    let raw = row.repeat(height as usize);
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // depth 8, RGB, deflate, no filter set, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &zlib_stored(&raw));
    chunk(&mut png, b"IEND", &[]);
    png
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream of stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = data.chunks(0xFFFF).collect();
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for byte in data {
        a = (a + u32::from(*byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn some_channels_have_picons() {
        let png = picon("1_0_19_283D_3FB_1_C00000_0_0_0.png").unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert_ne!(png, picon("1_0_19_132F_3EF_1_C00000_0_0_0.png").unwrap());
        assert!(picon("1_0_1_6F0B_44D_1_C00000_0_0_0.png").is_none());
        assert!(picon("1:0:19:283D:3FB:1:C00000:0:0:0:.png").is_none());
        assert!(picon("1_0_19_283D_3FB_1_C00000_0_0_0").is_none());
        assert!(picon("../etc/passwd.png").is_none());
    }
}
