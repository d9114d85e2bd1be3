//! The settings loader (`src/config.rs`, compiled here on its own) on arbitrary
//! `intake.toml` contents: no panic, and what loads passes its own checks. It calls
//! `Settings::load_text`, the part of `Settings::load` after the file is read (defaults,
//! the file, the variables, validation), so no file is written and the process
//! environment is not read; kept to that entry point so that it survives changes to
//! the settings' shape.
//!
//! Lines of the input that start with `#$ ` (TOML comments) are the environment:
//! `#$ INTAKE_PRESIGN_TTL=15m` sets that variable, so the variables' path and their
//! precedence over the file are fuzzed too.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

// What the service uses and these targets do not.
#[allow(dead_code, unused_imports)]
#[path = "../../src/config.rs"]
mod config;

fuzz_target!(|data: &[u8]| {
    // A file that is not UTF-8 is refused when it is read, before this.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| line.strip_prefix("#$ ")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match config::Settings::load_text(Some((Path::new("intake.toml"), text)), env) {
        Ok((settings, warnings)) => {
            settings.validate().expect("loaded settings are valid");
            assert!(warnings.iter().all(|w| !w.is_empty()));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
