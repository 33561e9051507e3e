//! Helpers for the options every layer declares with clap (`#[derive(Args)]` next to the code
//! they configure): defaults read from the attributes alone, and optional paths.

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser};

/// The defaults of a clap argument group as its attributes declare them, without reading the
/// environment: the one place defaults are written is the `#[arg]` attribute.
pub fn clap_defaults<T: Args + FromArgMatches>() -> T {
    #[derive(Parser)]
    struct Only<G: Args + FromArgMatches> {
        #[command(flatten)]
        group: G,
    }
    let command = Only::<T>::command().mut_args(|arg| arg.env(None::<&str>));
    let matches = command.try_get_matches_from(["defaults"]).expect("every option has a default");
    Only::<T>::from_arg_matches(&matches).expect("defaults parse").group
}

/// A path option whose default is "not given" (empty): clap's own path parser refuses empty
/// values, and required paths are checked once every source (flag, variable, file) is merged.
pub fn path_or_unset(value: &str) -> Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(value))
}
