//! The `session-admin` binary: see the crate documentation, or `session-admin --help`.

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("session-admin: error: cannot start the async runtime: {err}");
            return std::process::ExitCode::from(1);
        }
    };
    runtime.block_on(session_admin::run_in_terminal()).into()
}
