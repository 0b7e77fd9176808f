//! `file` and `stdout`: JSON lines. The file sink appends to one file, rotating by size, and
//! syncs before it confirms, so a confirmed event survives a power cut.

use crate::error::DeliveryError;
use crate::sink::{Outcome, Sink};
use crate::sinks::{Declared, FromConsumer, event_json};
use falconer_model::crd::FileConfig;
use falconer_store::Event;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

const BATCH: usize = 500;

pub struct FileLines {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: Option<File>,
    size: u64,
}

impl FileLines {
    /// A sink writing `settings.path`, which must lie inside `dir` (`delivery.file_dir`) and
    /// not be one of the database's files.
    pub fn build(
        consumer: &str,
        settings: &FileConfig,
        dir: &Path,
    ) -> Result<FileLines, DeliveryError> {
        let path = PathBuf::from(&settings.path);
        let error = |message: String| DeliveryError::Config {
            consumer: consumer.to_string(),
            message,
        };
        if !path.is_absolute() {
            return Err(error(format!(
                "file.path `{}` must be absolute",
                settings.path
            )));
        }
        let plain = path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !plain || !path.starts_with(dir) || path == dir {
            return Err(error(format!(
                "file.path `{}` must be a file inside {} (delivery.file_dir), without `.` or `..`",
                settings.path,
                dir.display()
            )));
        }
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("falconer.db"))
        {
            return Err(error(format!(
                "file.path `{}` is the hub's database",
                settings.path
            )));
        }
        if settings.max_bytes < 4096 {
            return Err(error("file.maxBytes must be at least 4096".into()));
        }
        Ok(FileLines {
            path,
            max_bytes: settings.max_bytes,
            keep: settings.keep,
            file: None,
            size: 0,
        })
    }

    fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        if self.file.is_some() && self.size > 0 && self.size + lines.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                // A symbolic link in place of the file is refused, not followed.
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&self.path)?;
                self.size = file.metadata()?.len();
                self.file.insert(file)
            }
        };
        file.write_all(lines)?;
        file.sync_data()?;
        self.size += lines.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.keep == 0 {
            return std::fs::remove_file(&self.path);
        }
        for n in (1..self.keep).rev() {
            if numbered(n).exists() {
                std::fs::rename(numbered(n), numbered(n + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(1))
    }
}

fn lines(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 2048);
    for event in events {
        out.extend_from_slice(&event_json(event));
        out.push(b'\n');
    }
    out
}

impl FromConsumer for FileLines {
    fn from_consumer(declared: &Declared<'_>) -> Result<Self, DeliveryError> {
        let settings = declared.section(declared.consumer.file.as_ref(), "file")?;
        let dir = declared.file_dir.ok_or_else(|| {
            declared
                .config("type file writes only inside delivery.file_dir, which is not set".into())
        })?;
        FileLines::build(declared.name, settings, dir)
    }
}

impl FromConsumer for Stdout {
    fn from_consumer(_: &Declared<'_>) -> Result<Self, DeliveryError> {
        Ok(Stdout)
    }
}

impl Sink for FileLines {
    fn batch_size(&self) -> usize {
        BATCH
    }

    async fn send(&mut self, events: &[Event]) -> Outcome {
        let lines = lines(events);
        // The write blocks: off the async threads where the runtime allows (a consumer's
        // worker); in place on a current-thread runtime (an HTTP worker's test send), where
        // block_in_place would panic.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let written = if multi_thread {
            tokio::task::block_in_place(|| self.write(&lines))
        } else {
            self.write(&lines)
        };
        // A full disk or a permission problem may be fixed by the operator: retry, lose nothing.
        match written {
            Ok(()) => Outcome::Delivered,
            Err(e) => {
                self.file = None;
                Outcome::Retry(format!("writing {}: {e}", self.path.display()))
            }
        }
    }
}

/// `stdout`: JSON lines on the hub's standard output.
pub struct Stdout;

impl Sink for Stdout {
    fn batch_size(&self) -> usize {
        BATCH
    }

    async fn send(&mut self, events: &[Event]) -> Outcome {
        let lines = lines(events);
        let mut out = std::io::stdout().lock();
        match out.write_all(&lines).and_then(|()| out.flush()) {
            Ok(()) => Outcome::Delivered,
            Err(e) => Outcome::Retry(format!("writing to standard output: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::event;

    fn sink(dir: &std::path::Path, max_bytes: u64, keep: u32) -> FileLines {
        FileLines::build(
            "files",
            &FileConfig {
                path: dir.join("out/events.jsonl").display().to_string(),
                max_bytes,
                keep,
            },
            dir,
        )
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn events_are_appended_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = sink(dir.path(), 1 << 20, 2);
        assert_eq!(
            sink.send(&[event("a"), event("b")]).await,
            Outcome::Delivered
        );
        assert_eq!(sink.send(&[event("c")]).await, Outcome::Delivered);
        let text = std::fs::read_to_string(dir.path().join("out/events.jsonl")).unwrap();
        let rules: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["rule"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(rules, ["a", "b", "c"]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_file_rotates_by_size_and_keeps_the_configured_number() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = sink(dir.path(), 4096, 2);
        for i in 0..40 {
            assert_eq!(
                sink.send(&[event(&format!("r{i}"))]).await,
                Outcome::Delivered
            );
        }
        let out = dir.path().join("out");
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]);
        for name in names {
            assert!(std::fs::metadata(out.join(name)).unwrap().len() <= 4096);
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_unwritable_path_is_retried_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("out"),
            b"a file where a directory should be",
        )
        .unwrap();
        let mut sink = sink(dir.path(), 1 << 20, 1);
        assert!(matches!(sink.send(&[event("a")]).await, Outcome::Retry(_)));
    }

    #[test]
    fn only_a_plain_path_inside_the_file_dir_and_not_the_database_is_accepted() {
        let dir = Path::new("/var/lib/falconer");
        let build = |path: &str| {
            let settings = FileConfig {
                path: path.into(),
                max_bytes: 1 << 20,
                keep: 1,
            };
            FileLines::build("files", &settings, dir).map(|_| ())
        };
        assert!(build("/var/lib/falconer/events.jsonl").is_ok());
        assert!(build("/var/lib/falconer/out/events.jsonl").is_ok());
        for (path, why) in [
            ("relative.jsonl", "absolute"),
            ("/etc/cron.d/x", "delivery.file_dir"),
            ("/var/lib/falconer/../../etc/passwd", "delivery.file_dir"),
            ("/var/lib/falconer", "delivery.file_dir"),
            ("/var/lib/falconer/falconer.db-wal", "database"),
        ] {
            let error = build(path).unwrap_err().to_string();
            assert!(error.contains(why), "{path}: {error}");
        }
    }

    #[tokio::test]
    async fn a_symbolic_link_in_place_of_the_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "untouched").unwrap();
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("out/events.jsonl")).unwrap();
        let mut sink = sink(dir.path(), 1 << 20, 1);
        assert!(matches!(sink.send(&[event("r")]).await, Outcome::Retry(_)));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
    }
}
