//! Floors for the file benchmark (scripts/bench.sh): what reading an NDJSON file costs before any rule runs.
//!
//! `parse_floor value FILE` parses every line into a `serde_json::Value` (the crate's own features, so the
//! same order-preserving maps esdetect used before its projection parser) and drops it; `parse_floor read
//! FILE` only reads the lines. Prints the number of lines.

use std::io::{BufRead, BufReader};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, path) = match args.as_slice() {
        [_, mode, path] => (mode.as_str(), path.as_str()),
        _ => {
            eprintln!("usage: parse_floor value|read FILE");
            std::process::exit(2);
        }
    };
    let file = std::fs::File::open(path).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(2)
    });
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut line = Vec::new();
    let (mut lines, mut objects) = (0u64, 0u64);
    while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
        lines += 1;
        if mode == "value" {
            if let Ok(serde_json::Value::Object(_)) = serde_json::from_slice::<serde_json::Value>(&line) {
                objects += 1;
            }
        }
        line.clear();
    }
    println!("{lines} lines, {objects} parsed objects");
}
