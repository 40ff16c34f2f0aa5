//! `relink daemon`: JSON-RPC 2.0 control of a socket for other processes.

use crate::cli::DaemonArgs;
use crate::exit::CliError;

pub(crate) async fn run(_args: DaemonArgs) -> Result<(), CliError> {
    Err(CliError::Other("the daemon is not built yet".into()))
}
