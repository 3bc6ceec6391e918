//! Experiments: experiments.
