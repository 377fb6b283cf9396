//! Applies one layer blob to a root and prints the throughput: the unpack pipeline alone
//! (decompress, diff_id, stage, publish), for measuring it against `umoci unpack`.
//!
//! `unpack_layer BLOB MEDIA_TYPE DIFF_ID ROOT`

use std::time::Instant;

use enclave_image::unpack::{unpack_layer, UnpackOptions};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [blob, media_type, diff_id, root] = args.as_slice() else {
        eprintln!("usage: unpack_layer BLOB MEDIA_TYPE DIFF_ID ROOT");
        std::process::exit(2);
    };
    let file = match std::fs::File::open(blob) {
        Ok(f) => std::io::BufReader::with_capacity(256 * 1024, f),
        Err(e) => {
            eprintln!("unpack_layer: {blob}: {e}");
            std::process::exit(1);
        }
    };
    let start = Instant::now();
    match unpack_layer(
        file,
        media_type,
        diff_id,
        root.as_ref(),
        &UnpackOptions::default(),
    ) {
        Ok(stats) => {
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{} entries, {:.1} MiB uncompressed in {secs:.3} s: {:.0} MiB/s",
                stats.entries,
                stats.tar_bytes as f64 / 1048576.0,
                stats.tar_bytes as f64 / 1048576.0 / secs
            );
        }
        Err(e) => {
            eprintln!("unpack_layer: {e}");
            std::process::exit(1);
        }
    }
}
