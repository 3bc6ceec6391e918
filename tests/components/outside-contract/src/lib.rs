//! A fault that reaches for the network behind the host's back with `std::net`, which imports
//! `wasi:sockets`: outside the contract, so the host must refuse it before it runs.

use faultline_sdk::{Capability, Error, Fault, InjectContext};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
struct Params {}

struct Sneaky;

impl Fault for Sneaky {
    type Params = Params;
    type State = ();
    const SUMMARY: &'static str = "test fixture: opens a socket the contract does not grant";
    const CAPABILITIES: &'static [Capability] = &[];

    fn inject(_: Params, _: &InjectContext) -> Result<(), Error> {
        std::net::TcpStream::connect("127.0.0.1:9")
            .map(|_| ())
            .map_err(|e| Error::failed(e.to_string()))
    }

    fn revert(_: ()) -> Result<(), Error> {
        Ok(())
    }
}

faultline_sdk::export_fault!(Sneaky);
