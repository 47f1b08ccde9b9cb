//! The `latflow` command-line tool. See `latflow help`.

fn main() {
    latflow::tensor::malloc::keep_large_blocks_on_heap();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = latflow::cli::run(&latflow::theory::builtin(), &argv) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}
