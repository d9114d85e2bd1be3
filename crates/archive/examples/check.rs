//! `cargo run -p intake-archive --example check -- FILE...`: validates each archive
//! with the default limits and prints its files (size, SHA-256, name) or the refusal's
//! code and message. Exits 1 if any archive is refused.

use std::path::Path;
use std::process::ExitCode;

use intake_archive::{ExtractLimits, SafeArchive};

fn main() -> ExitCode {
    let mut refused = false;
    for arg in std::env::args_os().skip(1) {
        let path = Path::new(&arg);
        match check(path) {
            Ok(lines) => {
                println!("{}: accepted", path.display());
                for line in lines {
                    println!("  {line}");
                }
            }
            Err(e) => {
                refused = true;
                println!("{}: {} {e}", path.display(), e.code());
            }
        }
    }
    if refused {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn check(path: &Path) -> Result<Vec<String>, intake_archive::ExtractError> {
    let mut archive = SafeArchive::open(path, ExtractLimits::default())?;
    let scratch = std::env::temp_dir().join(format!("intake-archive-check-{}", std::process::id()));
    let mut lines = Vec::new();
    for entry in archive.entries().to_vec() {
        let file = archive.extract_to(&entry, &scratch);
        let _ = std::fs::remove_file(&scratch);
        let file = file?;
        lines.push(format!("{:>12} {} {}", file.size, file.sha256, entry.name));
    }
    Ok(lines)
}
