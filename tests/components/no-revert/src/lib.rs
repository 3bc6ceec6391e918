//! A would-be fault with no `revert` export: the host must refuse it.

wit_bindgen::generate!({
    inline: r#"
        package fixture:no-revert;

        world no-revert {
            use faultline:contract/types@0.1.1.{description, error, inject-request};
            export describe: func() -> description;
            export validate: func(params: string) -> result<_, error>;
            export inject: func(request: inject-request) -> result<list<u8>, error>;
        }
    "#,
    path: "../../../faults/sdk/wit",
    generate_all,
});

struct NoRevert;

impl Guest for NoRevert {
    fn describe() -> Description {
        Description {
            name: "no-revert".into(),
            version: "0.1.0".into(),
            summary: "test fixture without revert".into(),
            params_schema: "{}".into(),
            capabilities: vec![],
            revertible: true,
        }
    }
    fn validate(_: String) -> Result<(), Error> {
        Ok(())
    }
    fn inject(_: InjectRequest) -> Result<Vec<u8>, Error> {
        Ok(vec![])
    }
}

export!(NoRevert);
