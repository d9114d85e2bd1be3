//! `cargo run -p intake-archive --features testkit --example write_fuzz_seeds -- DIR`:
//! writes the test kit's archives (well-formed and hostile) into DIR, as the seed
//! corpus of the fuzz targets in `fuzz/`.

use std::path::PathBuf;

use intake_archive::testkit;

fn main() {
    let dir = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .expect("usage: write_fuzz_seeds DIR"),
    );
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    let seeds = testkit::crafted();
    for (name, bytes) in seeds {
        std::fs::write(dir.join(format!("{name}.zip")), bytes).expect("write seed");
    }
}
