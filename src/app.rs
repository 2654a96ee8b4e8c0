//! The HTML shell, the root component and the routes.

use leptos::prelude::*;
use leptos_meta::HashedStylesheet;
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{lazy_route, Lazy, LazyRoute, SsrMode, StaticSegment};

use crate::components::user_box::UserBox;
use crate::pages::audit::AuditPage;
use crate::pages::autopilot::AutopilotPage;
use crate::pages::login::LoginPage;
use crate::pages::overview::OverviewPage;
use crate::pages::reports::ReportsPage;
use crate::pages::rollback::RollbackPage;
use crate::pages::rollout::RolloutPage;

pub fn shell(options: LeptosOptions) -> impl IntoView {
    // The page's Content-Security-Policy, with the nonce its scripts carry, is set by the
    // server's middleware from the response itself (server/csp.rs), not here.
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                // One title for every page, in the shell: no leptos_meta context in the browser's
                // wasm (about 6 KiB of gzip in the main module).
                <title>"Split insulin doses: rollout"</title>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                <HashedStylesheet options=options.clone() id="leptos"/>
                <HydrationScripts options/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    view! {
        <Router>
            <header class="top">
                <span class="brand">"rollout-dashboard"</span>
                <span class="subtitle">"Split insulin doses"</span>
                <nav class="pages"><a href="/">"Overview"</a><a href="/rollout">"Rollout control"</a><a href="/autopilot">"Autopilot"</a><a href="/rollback">"Rollback"</a><a href="/reports">"Reports"</a><a href="/audit">"Audit"</a></nav>
                <span class="spacer"></span>
                <UserBox/>
            </header>
            <main>
                <Routes fallback=|| view! { <p>"Page not found."</p> }>
                    // Async: the page arrives complete, values included, before any script runs.
                    <Route path=StaticSegment("") view={Lazy::<OverviewRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=StaticSegment("login") view={Lazy::<LoginRoute>::new()}/>
                    <Route path=StaticSegment("rollout") view={Lazy::<RolloutRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=StaticSegment("autopilot") view={Lazy::<AutopilotRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=StaticSegment("audit") view={Lazy::<AuditRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=StaticSegment("rollback") view={Lazy::<RollbackRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=StaticSegment("reports") view={Lazy::<ReportsRoute>::new()} ssr=SsrMode::Async/>
                </Routes>
            </main>
        </Router>
    }
}

// Each page is a lazy route: built with `cargo leptos build --split`, its code is a wasm chunk of
// its own, loaded when the page is shown, so the first load carries only the shell and that page.
macro_rules! lazy_page {
    ($route:ident, $page:ident) => {
        pub struct $route;

        #[lazy_route]
        impl LazyRoute for $route {
            fn data() -> Self {
                $route
            }

            fn view(_this: Self) -> AnyView {
                view! { <$page/><PageHydrated/> }.into_any()
            }
        }
    };
}

lazy_page!(OverviewRoute, OverviewPage);
lazy_page!(LoginRoute, LoginPage);
lazy_page!(RolloutRoute, RolloutPage);
lazy_page!(AuditRoute, AuditPage);
lazy_page!(AutopilotRoute, AutopilotPage);
lazy_page!(RollbackRoute, RollbackPage);
lazy_page!(ReportsRoute, ReportsPage);

/// Marks the page once the browser has taken over the page's own view (its chunk loaded and
/// hydrated, its handlers attached), so that tests and people can tell.
#[component]
fn PageHydrated() -> impl IntoView {
    Effect::new(|_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
}
