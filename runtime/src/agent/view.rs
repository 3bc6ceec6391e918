//! The live execution view: a web page the agent serves.
//!
//! STUB (owner: view helper).

/// The routes of the view's static page and assets (under `/ui`).
pub fn router<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new()
}
