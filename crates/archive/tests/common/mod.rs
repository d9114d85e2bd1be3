//! What an archive holds as different readers see it: this crate, Python's `zipfile`,
//! `bsdtar` (seekable and from a pipe) and Info-ZIP `unzip`. A view is the archive's
//! regular files, sorted by name, with their bytes.
//!
//! The tools are found on `PATH` (`.ci/run` installs them). Without them the checks
//! that need them skip, except under `CI=true`, where they fail.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use intake_archive::{ExtractError, ExtractLimits, SafeArchive};

/// Regular files with their bytes, sorted by name.
pub type View = Vec<(String, Vec<u8>)>;

/// Whether `CI=true`: missing inputs fail instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Whether `program` runs; panics under CI when it does not.
pub fn have(program: &str, probe: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok || !in_ci(), "{program} is missing (CI=true)");
    if !ok {
        eprintln!("skipping what needs {program}: not installed");
    }
    ok
}

/// Whether every reader of [`reader_views`] is installed.
pub fn have_readers() -> bool {
    // Evaluate all, so CI names every missing tool.
    let found = [
        have("python3", &["-c", "import zipfile"]),
        have("bsdtar", &["--version"]),
        have("unzip", &["-v"]),
    ];
    found.iter().all(|&f| f)
}

/// The archive as this crate sees it, or the refusal's code. Read from the file, and
/// again from its bytes in memory (extracting into memory), which must give the same.
pub fn our_view(path: &Path) -> Result<View, String> {
    let from_file = file_view(path);
    let bytes = fs::read(path).expect("read the archive");
    let from_memory = memory_view(bytes);
    assert!(
        from_memory == from_file,
        "{}: read from memory: {:?}, from the file: {:?}",
        path.display(),
        from_memory.as_ref().map(summary),
        from_file.as_ref().map(summary)
    );
    from_file
}

fn shown(e: ExtractError) -> String {
    format!("{}: {e}", e.code())
}

/// `SafeArchive::open` on the file, each entry extracted to a file.
fn file_view(path: &Path) -> Result<View, String> {
    let mut archive = SafeArchive::open(path, ExtractLimits::default()).map_err(shown)?;
    let out = tempfile::tempdir().expect("temp dir");
    let mut view = View::new();
    for (i, entry) in archive.entries().to_vec().iter().enumerate() {
        let dest = out.path().join(i.to_string());
        archive.extract_to(entry, &dest).map_err(shown)?;
        view.push((entry.name.clone(), fs::read(&dest).expect("read extracted")));
    }
    view.sort();
    Ok(view)
}

/// `SafeArchive::from_source` on the bytes, each entry extracted into memory.
fn memory_view(bytes: Vec<u8>) -> Result<View, String> {
    let mut archive =
        SafeArchive::from_source(Arc::new(bytes), ExtractLimits::default()).map_err(shown)?;
    let mut view = View::new();
    for entry in archive.entries().to_vec() {
        let mut data = Vec::new();
        archive.extract_into(&entry, &mut data).map_err(shown)?;
        view.push((entry.name, data));
    }
    view.sort();
    Ok(view)
}

/// The archive as each other reader sees it.
pub fn reader_views(path: &Path) -> Vec<(&'static str, Result<View, String>)> {
    vec![
        ("python zipfile", python_view(path)),
        ("bsdtar", extracted_view(path, Tool::Bsdtar)),
        ("bsdtar from a pipe", extracted_view(path, Tool::BsdtarPipe)),
        ("unzip", extracted_view(path, Tool::Unzip)),
    ]
}

/// Every reader that differs from `ours`, with what it saw.
pub fn differences(path: &Path, ours: &View) -> Vec<String> {
    reader_views(path)
        .into_iter()
        .filter(|(_, view)| view.as_ref() != Ok(ours))
        .map(|(reader, view)| match view {
            Ok(view) => format!("{reader} sees {:?}", summary(&view)),
            Err(e) => format!("{reader} fails: {e}"),
        })
        .collect()
}

/// Names and sizes, for messages.
pub fn summary(view: &View) -> Vec<(String, usize)> {
    view.iter().map(|(n, b)| (n.clone(), b.len())).collect()
}

const PYTHON_LISTING: &str = "
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for i in z.infolist():
        if not i.is_dir():
            print(i.filename.encode('utf-8', 'surrogateescape').hex(), z.read(i).hex())
";

fn python_view(path: &Path) -> Result<View, String> {
    let out = Command::new("python3")
        .args(["-c", PYTHON_LISTING])
        .arg(path)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    let mut view = View::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (name, data) = line.split_once(' ').unwrap_or((line, ""));
        let name = hex::decode(name).map_err(|e| e.to_string())?;
        let data = hex::decode(data).map_err(|e| e.to_string())?;
        view.push((String::from_utf8_lossy(&name).into_owned(), data));
    }
    view.sort();
    Ok(view)
}

#[derive(Clone, Copy)]
enum Tool {
    Bsdtar,
    BsdtarPipe,
    Unzip,
}

/// Extracts with `tool` into a fresh directory and reads back every regular file.
fn extracted_view(path: &Path, tool: Tool) -> Result<View, String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = match tool {
        Tool::Bsdtar => {
            let mut c = Command::new("bsdtar");
            c.arg("-xf").arg(path).arg("-C").arg(dir.path());
            c
        }
        Tool::BsdtarPipe => {
            let mut c = Command::new("bsdtar");
            c.args(["-xf", "-", "-C"]).arg(dir.path());
            c.stdin(File::open(path).map_err(|e| e.to_string())?);
            c
        }
        Tool::Unzip => {
            let mut c = Command::new("unzip");
            c.args(["-qq", "-o"]).arg(path).arg("-d").arg(dir.path());
            c
        }
    };
    let out = command.output().map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // unzip exits with 1 (a warning) on an archive without entries.
    let empty = matches!(tool, Tool::Unzip) && stderr.contains("zipfile is empty");
    if !out.status.success() && !empty {
        return Err(stderr.trim().to_owned());
    }
    let mut view = View::new();
    walk(dir.path(), "", &mut view)?;
    view.sort();
    Ok(view)
}

fn walk(dir: &Path, prefix: &str, view: &mut View) -> Result<(), String> {
    for entry in fs::read_dir(dir).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let kind = entry.file_type().map_err(|e| e.to_string())?;
        if kind.is_dir() {
            walk(&entry.path(), &format!("{name}/"), view)?;
        } else if kind.is_file() {
            view.push((name, fs::read(entry.path()).map_err(|e| e.to_string())?));
        } else {
            return Err(format!("{name} is neither a file nor a directory"));
        }
    }
    Ok(())
}
