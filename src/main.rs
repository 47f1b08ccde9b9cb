//! The `latflow` command-line tool. See `latflow help`.

fn main() {
    latflow::tensor::malloc::keep_large_blocks_on_heap();
    // `latflow ... | head`: a closed stdout ends the program quietly (status 141, as a
    // SIGPIPE would), not with a panic message
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = latflow::cli::run(&latflow::theory::builtin(), &argv) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}
