//! The settings loader (`src/config.rs`, compiled here on its own) on arbitrary
//! `intake.toml` contents: no panic, and what loads passes its own checks. Kept to
//! the one public entry point so that it survives changes to the settings' shape.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

// What the service uses and these targets do not.
#[allow(dead_code, unused_imports)]
#[path = "../../src/config.rs"]
mod config;

/// The file the input is written to, in memory where the machine has it.
fn file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let base = std::path::Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("intake-config-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir.join("intake.toml")
    })
}

fuzz_target!(|data: &[u8]| {
    std::fs::write(file(), data).expect("write input");
    match config::Settings::load(Some(file())) {
        Ok(settings) => settings.validate().expect("loaded settings are valid"),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
