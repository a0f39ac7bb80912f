//! The pipeline templates xg2g runs under the `ladder` scenario: every shipped template, copied
//! from `--pipelines` (xg2g's own `pipelines/`), plus `h264-{height}` at each lower rung of the
//! `abr` ladder, the profiles of its separate-sessions baseline. xg2g gets the folder as
//! `XG2G_PIPELINES_DIR`; the ladder it read goes to the FFmpeg peer.

use std::path::{Path, PathBuf};

use super::BenchError;
use super::ladder::{LadderSpec, rung_profile, rung_template};

/// The bench's template folder and the ladder in it.
#[derive(Debug)]
pub(crate) struct BenchPipelines {
    pub dir: PathBuf,
    pub ladder: LadderSpec,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> BenchError {
    move |source| BenchError::Io { what, source }
}

/// Copies the `*.toml` of `source` into `work/pipelines` and adds the rung profiles.
pub(crate) fn prepare(source: &Path, work: &Path) -> Result<BenchPipelines, BenchError> {
    let read = |name: &str| {
        let path = source.join(name);
        std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BenchError::NoTemplate(path),
            _ => BenchError::Io {
                what: format!("reading {}", path.display()),
                source: e,
            },
        })
    };
    let ladder = LadderSpec::from_abr_toml(&read("abr.toml")?)?;
    let h264 = read("h264.toml")?;
    let dir = work.join("pipelines");
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let entries = std::fs::read_dir(source).map_err(io(format!("listing {}", source.display())))?;
    for entry in entries {
        let path = entry.map_err(io(format!("listing {}", source.display())))?.path();
        if let Some(name) = path
            .file_name()
            .filter(|_| path.extension().is_some_and(|e| e == "toml"))
        {
            std::fs::copy(&path, dir.join(name)).map_err(io(format!("copying {}", path.display())))?;
        }
    }
    for rung in ladder.lower() {
        let file = dir.join(format!("{}.toml", rung_profile(rung.height)));
        std::fs::write(&file, rung_template(&h264, rung)?).map_err(io(format!("writing {}", file.display())))?;
    }
    Ok(BenchPipelines { dir, ladder })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_templates_and_two_rung_profiles_land_in_the_work_folder() {
        let shipped = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines"));
        if !shipped.join("abr.toml").exists() {
            eprintln!("SKIP: pipelines/abr.toml is not there yet");
            return;
        }
        let work = tempfile::tempdir().expect("work dir");
        let made = prepare(shipped, work.path()).expect("prepared");
        assert_eq!(made.dir, work.path().join("pipelines"));
        let mut names: Vec<String> = std::fs::read_dir(&made.dir)
            .expect("folder")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let rungs = made.ladder.lower_heights().map(rung_profile);
        let mut expected = vec!["aac", "abr", "encoders", "h264"];
        expected.extend(rungs.iter().map(String::as_str));
        for name in &expected {
            assert!(names.contains(&format!("{name}.toml")), "{name} in {names:?}");
        }
        // xg2g parses and validates the folder as it would at start.
        let profiles = xg2g::pipeline::load(Some(&made.dir)).expect("xg2g loads the bench's templates");
        for name in expected.iter().filter(|n| **n != "encoders") {
            assert!(profiles.get(name).is_some(), "{name}");
        }
    }

    #[test]
    fn a_folder_without_the_ladder_is_named() {
        let source = tempfile::tempdir().expect("source");
        let work = tempfile::tempdir().expect("work");
        let error = prepare(source.path(), work.path()).unwrap_err();
        assert!(
            matches!(&error, BenchError::NoTemplate(p) if p.ends_with("abr.toml")),
            "{error}"
        );
        assert!(error.to_string().contains("--pipelines"), "{error}");
    }
}
