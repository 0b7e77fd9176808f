//! Embeds `migrations/<database>/*.sql` into the binary, so `falconer migrate` and start-up
//! need no files beside the executable.

// A build script reports failure by panicking; cargo shows the message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut out = String::new();
    for database in ["postgres", "sqlite"] {
        let dir = root.join(database);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "sql"))
            .collect();
        files.sort();
        writeln!(
            out,
            "pub const {}: &[(i64, &str, &str)] = &[",
            database.to_uppercase()
        )
        .unwrap();
        for path in files {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("utf-8 file name");
            let (version, description) = stem
                .split_once('_')
                .unwrap_or_else(|| panic!("{stem}: expected YYYYMMDDHHMMSS_verb_noun.sql"));
            let version: i64 = version
                .parse()
                .unwrap_or_else(|_| panic!("{stem}: version is not a number"));
            writeln!(
                out,
                "    ({version}, {description:?}, include_str!({:?})),",
                path.canonicalize().expect("canonical path")
            )
            .unwrap();
        }
        out.push_str("];\n");
    }
    let dest = Path::new(&env::var("OUT_DIR").expect("OUT_DIR")).join("migrations.rs");
    fs::write(dest, out).expect("write migrations.rs");
}
