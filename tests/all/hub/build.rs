//! The bundled hub publishes exactly what its sources build: `tests/build.rs` rebuilds every
//! fault and probe from source with the flags of `faultline hub build`, and each digest must
//! equal the one in `hub-index.json` and that of the committed artefact. Nobody can publish an
//! artefact its source does not produce.

use faultline::hub::{Digest, Index};
use faultline_tests::{components as c, repo_root};

#[test]
fn the_bundled_hub_matches_what_its_sources_build() {
    let root = repo_root();
    let bytes = std::fs::read(root.join("hub-index.json")).unwrap();
    let index = Index::parse(&bytes, "hub-index.json").unwrap_or_else(|e| panic!("{e}"));
    let built = c::PUBLISHED;
    for (name, path) in built {
        let (name, path) = (*name, *path);
        let from_source = Digest::of(&std::fs::read(path).unwrap());
        let package = index
            .packages
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} is not in hub-index.json"));
        let newest = &package.versions[0];
        assert_eq!(
            newest.digest, from_source,
            "{name}: hub-index.json says {}, the source builds {from_source}; run `faultline hub build`",
            newest.digest
        );
        let committed = root.join(&newest.urls[0]);
        let (digest, size) = Digest::of_file(&committed).unwrap();
        assert_eq!(digest, from_source, "{}", committed.display());
        assert_eq!(size, newest.size);
    }
    let names: Vec<&str> = built.iter().map(|(n, _)| *n).collect();
    for p in &index.packages {
        assert!(
            names.contains(&p.name.as_str()),
            "{} is published but no test rebuilds it from source",
            p.name
        );
    }
}
