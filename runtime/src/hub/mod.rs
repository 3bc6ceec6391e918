//! Chaos hub: index, fetch, verify, cache, sign, resolve.
