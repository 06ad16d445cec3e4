//! `ConnectorFactory::doctor` is synchronous and runs inside the CLI's async
//! runtime, so a connector's checks that call its upstream run here: on a
//! thread of their own with a small current-thread runtime.

use idbridge_core::Problem;
use std::future::Future;

/// Run `checks` to completion off the caller's runtime. If no runtime can be
/// made, one non-fatal problem on `key` says so.
pub fn run<F>(key: String, checks: F) -> Vec<Problem>
where
    F: Future<Output = Vec<Problem>> + Send,
{
    let run = move || -> Vec<Problem> {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(checks),
            Err(e) => vec![Problem {
                key,
                message: format!("cannot run the upstream checks: {e}"),
                fatal: false,
            }],
        }
    };
    std::thread::scope(|s| s.spawn(run).join().unwrap_or_default())
}
