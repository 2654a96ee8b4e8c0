//! Who is signed in, in the page header, with sign-in and sign-out.

use leptos::prelude::*;

use crate::api::auth::Identity;

#[component]
pub fn UserBox() -> impl IntoView {
    let me = Resource::new(|| (), |_| get_me());
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                match me.await {
                    Ok(Some(Identity { user, role, via })) => view! {
                        <span class="user" data-testid="user">{user}" · "{role.as_str()}</span>
                        {(via == "local").then(|| view! {
                            <form method="post" action="/auth/logout" class="logout">
                                <button type="submit" data-testid="logout">"Sign out"</button>
                            </form>
                        })}
                    }.into_any(),
                    _ => view! { <a class="signin" href="/login" data-testid="signin">"Sign in"</a> }.into_any(),
                }
            })}
        </Suspense>
    }
}

// ---------------------------------------------------------------- server functions

/// Who the request comes from (None: nobody signed in).
#[server(endpoint = "me", input = leptos::server_fn::codec::GetUrl, output = crate::api::codec::JsonText)]
pub async fn get_me() -> Result<Option<Identity>, ServerFnError> {
    Ok(crate::server::fns::caller().await?.1.who().cloned())
}
