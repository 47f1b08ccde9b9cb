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
    let comm = match latflow::cli::ranks::world() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = latflow::cli::run_over(&latflow::theory::builtin(), &argv, comm.as_ref()) {
        if comm.size() == 1 {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
        // the other ranks may be waiting for this one: end the whole job
        eprintln!("error (rank {} of {}): {e}", comm.rank(), comm.size());
        comm.abort(2);
    }
    // drops comm: MPI_Finalize
}
