//! rollout-dashboard: the web control room for the "split insulin doses" rollout.
//! This file holds only the module map and the browser's hydrate entry.

pub mod api;
pub mod app;
pub mod components;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod server;
#[cfg(feature = "ssr")]
pub mod site;

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // Islands: only the interactive parts hydrate (app.rs); the rest of the page is the server's HTML.
    leptos::mount::hydrate_islands();
}
