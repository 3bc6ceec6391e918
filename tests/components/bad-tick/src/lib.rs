//! A fault that exports `tick` with a type of its own (`func(n: u32) -> u32`), not the
//! contract's: the host must refuse it at load, naming `tick`.

#![allow(missing_docs)]

wit_bindgen::generate!({
    path: "../../../faults/sdk/wit",
    inline: "
        package test:bad-tick;

        world bad-tick {
            use faultline:contract/types@0.1.1.{description, error, inject-request};

            export describe: func() -> description;
            export validate: func(params: string) -> result<_, error>;
            export inject: func(request: inject-request) -> result<list<u8>, error>;
            export revert: func(state: list<u8>) -> result<_, error>;
            export tick: func(n: u32) -> u32;
        }
    ",
    world: "test:bad-tick/bad-tick",
    generate_all,
});

struct BadTick;

impl Guest for BadTick {
    fn describe() -> Description {
        Description {
            name: "bad-tick".into(),
            version: "0.1.0".into(),
            summary: "test fixture: exports tick with the wrong type".into(),
            params_schema: r#"{"type": "object"}"#.into(),
            capabilities: Vec::new(),
            revertible: true,
        }
    }
    fn validate(_: String) -> Result<(), Error> {
        Ok(())
    }
    fn inject(_: InjectRequest) -> Result<Vec<u8>, Error> {
        Ok(Vec::new())
    }
    fn revert(_: Vec<u8>) -> Result<(), Error> {
        Ok(())
    }
    fn tick(n: u32) -> u32 {
        n
    }
}

export!(BadTick);
