//! `-v` / `-vv`: ward's own decisions on standard error, through `tracing`.
//!
//! Off by default. `-v` shows decisions (info level): why a step is skipped
//! or not redone, which state database and lock are used, precondition
//! verdicts, whether a scheduled run is due. `-vv` adds detail (debug).
//! Only events from ward's own code are shown: libraries that log (e.g.
//! an SMTP or PostgreSQL client at debug level) could print what a secret
//! went into. Plain text, no colours (so no `NO_COLOR` to honour).
//! ward's events carry step ids, states and reasons, never a
//! rendered command, an environment or a value.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the stderr subscriber for `-v` given `count` times; nothing
/// when zero, so the default costs one atomic load per event site.
pub fn init(count: u8) {
    let level = match count {
        0 => return,
        1 => LevelFilter::INFO,
        _ => LevelFilter::DEBUG,
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(count > 1);
    // `try_init`: a second install (impossible from main) is not worth a panic.
    let _ = tracing_subscriber::registry()
        .with(layer)
        .with(Targets::new().with_target("ward", level))
        .try_init();
}
