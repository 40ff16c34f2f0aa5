//! `relink demo`: an outage and its recovery, live, with nothing to set up.

use crate::cli::DemoArgs;
use crate::exit::CliError;

pub(crate) async fn run(_args: DemoArgs) -> Result<(), CliError> {
    Err(CliError::Other("the demo is not built yet".into()))
}
