//! The channel line-up: which bouquets to publish and how their entries become numbered channels.

use std::collections::HashSet;

use super::error::UpstreamError;
use super::openwebif::{OpenWebIf, ServiceEntry};
use crate::model::{Bouquet, Channel, RawRef, ServiceRef};

/// Enigma2 writes a reference's flags field in decimal: directory (1, 7 for a bouquet), marker
/// (64), group/alternatives (128), numbered marker (256), invisible (512). None of them is a
/// channel. [`RawRef`] reads the field as hexadecimal, which misses e.g. `1:832:` and `1:134:`.
const NOT_A_CHANNEL_FLAGS: u32 = 1 | 64 | 128 | 256 | 512;

/// How deep bouquets nested in bouquets are followed.
const MAX_NESTING: usize = 3;

/// Loads the channels of the `wanted` bouquets (all of the receiver's when empty), in that order,
/// numbered from 1 across bouquets. A bouquet nested in a chosen one is its own group, its
/// channels numbered where its entry stands. Bouquets are fetched one after the other: the
/// receiver is a small box.
pub async fn load_channels(client: &OpenWebIf, wanted: &[String]) -> Result<Vec<Channel>, UpstreamError> {
    let available = client.bouquets().await?;
    let chosen = select_bouquets(&available, wanted)?;
    let mut seen: HashSet<String> = chosen.iter().map(|b| b.reference.clone()).collect();
    let mut listed = Vec::with_capacity(chosen.len());
    for bouquet in chosen {
        list_bouquet(client, bouquet, &mut seen, &mut listed).await?;
    }
    let channels = number_channels(&listed);
    tracing::info!(
        bouquets = listed.len(),
        channels = channels.len(),
        "Loaded the channel line-up."
    );
    Ok(channels)
}

/// Appends `bouquet`'s entries to `out` as runs, each under the bouquet it belongs to: a nested
/// bouquet's entries go in where its directory entry stands, the rest of the outer bouquet after
/// them. `seen` keeps a bouquet from being listed twice (and loops from looping). A nested
/// bouquet that cannot be read is skipped with a warning; the outer one failing fails the load.
async fn list_bouquet(
    client: &OpenWebIf,
    bouquet: Bouquet,
    seen: &mut HashSet<String>,
    out: &mut Vec<(Bouquet, Vec<ServiceEntry>)>,
) -> Result<(), UpstreamError> {
    let entries = client.services(&bouquet).await?;
    let mut stack = vec![(bouquet, entries.into_iter(), 0_usize)];
    while let Some((current, mut rest, depth)) = stack.pop() {
        let mut run = Vec::new();
        let mut nested = None;
        for entry in rest.by_ref() {
            if RawRef(&entry.reference).is_directory() {
                if depth < MAX_NESTING && seen.insert(entry.reference.clone()) {
                    nested = Some(Bouquet {
                        reference: entry.reference,
                        name: entry.name,
                    });
                    break;
                }
                continue;
            }
            run.push(entry);
        }
        if !run.is_empty() {
            out.push((current.clone(), run));
        }
        let Some(nested) = nested else {
            continue;
        };
        match client.services(&nested).await {
            Ok(entries) => {
                stack.push((current, rest, depth));
                stack.push((nested, entries.into_iter(), depth + 1));
            }
            Err(error) => {
                tracing::warn!(bouquet = %nested.name, %error, "Skipping a nested bouquet that cannot be read.");
                stack.push((current, rest, depth));
            }
        }
    }
    Ok(())
}

/// The bouquets to publish, in the configured order: each wanted name matches exactly, else
/// ignoring case. An empty list takes every bouquet in the receiver's order. A bouquet named
/// twice is taken once.
pub(crate) fn select_bouquets(available: &[Bouquet], wanted: &[String]) -> Result<Vec<Bouquet>, UpstreamError> {
    if wanted.is_empty() {
        return Ok(available.to_vec());
    }
    let mut chosen: Vec<Bouquet> = Vec::with_capacity(wanted.len());
    for name in wanted {
        let found = available.iter().find(|b| b.name == *name).or_else(|| {
            let lower = name.to_lowercase();
            available.iter().find(|b| b.name.to_lowercase() == lower)
        });
        let Some(bouquet) = found else {
            return Err(UpstreamError::UnknownBouquet {
                name: name.clone(),
                available: available.iter().map(|b| b.name.clone()).collect(),
            });
        };
        if !chosen.iter().any(|b| b.reference == bouquet.reference) {
            chosen.push(bouquet.clone());
        }
    }
    Ok(chosen)
}

/// Numbers the channels of the listed bouquets from 1. Markers and nested bouquets are skipped,
/// as are references that do not parse (logged at debug); a channel listed again keeps its first
/// number and bouquet.
pub(crate) fn number_channels(listed: &[(Bouquet, Vec<ServiceEntry>)]) -> Vec<Channel> {
    let mut seen = HashSet::new();
    let mut channels = Vec::new();
    for (bouquet, entries) in listed {
        for entry in entries {
            if !is_channel_entry(&entry.reference) {
                continue;
            }
            let service_ref: ServiceRef = match entry.reference.parse() {
                Ok(r) => r,
                Err(error) => {
                    tracing::debug!(
                        bouquet = %bouquet.name,
                        reference = %entry.reference,
                        %error,
                        "Skipping a bouquet entry that is not a channel."
                    );
                    continue;
                }
            };
            if !seen.insert(service_ref.clone()) {
                continue;
            }
            let name = if entry.name.is_empty() {
                service_ref.to_string()
            } else {
                entry.name.clone()
            };
            channels.push(Channel {
                number: u32::try_from(channels.len() + 1).unwrap_or(u32::MAX),
                name,
                service_ref,
                bouquet: bouquet.name.clone(),
            });
        }
    }
    channels
}

/// False for markers, nested bouquets and alternatives.
fn is_channel_entry(reference: &str) -> bool {
    let raw = RawRef(reference);
    if raw.is_marker() || raw.is_directory() {
        return false;
    }
    let flags = reference.split(':').nth(1).and_then(|f| f.parse::<u32>().ok());
    flags.is_none_or(|f| f & NOT_A_CHANNEL_FLAGS == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bouquet(name: &str) -> Bouquet {
        Bouquet {
            reference: format!("1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \"userbouquet.{name}.tv\" ORDER BY bouquet"),
            name: name.to_owned(),
        }
    }

    fn entry(reference: &str, name: &str) -> ServiceEntry {
        ServiceEntry {
            reference: reference.to_owned(),
            name: name.to_owned(),
        }
    }

    fn names(bouquets: &[Bouquet]) -> Vec<&str> {
        bouquets.iter().map(|b| b.name.as_str()).collect()
    }

    #[test]
    fn selection_follows_the_configured_order() {
        let all = [
            bouquet("Favourites (TV)"),
            bouquet("Regional & Radio"),
            bouquet("Sport"),
        ];
        assert_eq!(
            names(&select_bouquets(&all, &[]).unwrap()),
            ["Favourites (TV)", "Regional & Radio", "Sport"]
        );
        let wanted = ["sport".to_owned(), "Favourites (TV)".to_owned(), "SPORT".to_owned()];
        assert_eq!(
            names(&select_bouquets(&all, &wanted).unwrap()),
            ["Sport", "Favourites (TV)"]
        );
    }

    #[test]
    fn exact_match_wins_over_case_insensitive() {
        let all = [bouquet("news"), bouquet("News")];
        let chosen = select_bouquets(&all, &["News".to_owned()]).unwrap();
        assert_eq!(chosen, [bouquet("News")]);
    }

    #[test]
    fn unknown_bouquet_lists_the_available_ones() {
        let all = [bouquet("Favourites (TV)"), bouquet("Regional & Radio")];
        let err = select_bouquets(&all, &["Favourites (TV)".to_owned(), "Foo".to_owned()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bouquet \"Foo\" not found on the receiver; available: \"Favourites (TV)\", \"Regional & Radio\""
        );
    }

    #[test]
    fn channels_are_numbered_across_bouquets_skipping_non_channels() {
        let listed = [
            (
                bouquet("Favourites (TV)"),
                vec![
                    entry("1:64:1:0:0:0:0:0:0:0::Öffentlich-Rechtliche", "Öffentlich-Rechtliche"),
                    entry("1:0:19:283D:3FB:1:C00000:0:0:0:", "Das Erste HD"),
                    entry("1:0:1:6F0B:44D:1:C00000:0:0:0:", "Bayerisches Fernsehen Süd"),
                    entry(
                        "1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \"userbouquet.archiv.tv\" ORDER BY bouquet",
                        "Archiv",
                    ),
                    entry("1:832:D:0:0:0:0:0:0:0:", ""),
                    entry("1:134:1:0:0:0:0:0:0:0:", "Alternatives"),
                    entry("4097:0:1:0:0:0:0:0:0:0:http%3a//example/stream:IPTV", "IPTV"),
                ],
            ),
            (
                bouquet("Regional & Radio"),
                vec![
                    entry("1:0:19:283d:3fb:1:c00000:0:0:0:", "Das Erste HD (again)"),
                    entry("1:0:2:2F1C:441:1:C00000:0:0:0:", "Ö1"),
                    entry("1:0:1:2EE3:441:1:C00000:0:0:0:", ""),
                ],
            ),
        ];
        let channels = number_channels(&listed);
        let got: Vec<(u32, &str, String, &str)> = channels
            .iter()
            .map(|c| (c.number, c.name.as_str(), c.service_ref.to_string(), c.bouquet.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    1,
                    "Das Erste HD",
                    "1:0:19:283D:3FB:1:C00000:0:0:0:".to_owned(),
                    "Favourites (TV)"
                ),
                (
                    2,
                    "Bayerisches Fernsehen Süd",
                    "1:0:1:6F0B:44D:1:C00000:0:0:0:".to_owned(),
                    "Favourites (TV)"
                ),
                (3, "Ö1", "1:0:2:2F1C:441:1:C00000:0:0:0:".to_owned(), "Regional & Radio"),
                (
                    4,
                    "1:0:1:2EE3:441:1:C00000:0:0:0:",
                    "1:0:1:2EE3:441:1:C00000:0:0:0:".to_owned(),
                    "Regional & Radio"
                ),
            ]
        );
    }
}
