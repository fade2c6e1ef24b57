//! Integration tests of layered loading, env mapping, bad input, secrets,
//! printing, the command line and reload.

mod bad_input;
mod cli;
mod env;
mod layers;
mod limits;
mod mounts;
mod properties;
mod reload;
mod secrets;
mod sections;
mod settings;
