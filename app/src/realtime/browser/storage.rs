//! This tab's `sessionStorage`, where drafts and unsent messages outlive a reload.

/// This tab's `sessionStorage`; `None` while rendering on the server or when the browser
/// refuses it.
pub fn session_storage() -> Option<web_sys::Storage> {
    leptos::prelude::window().session_storage().ok().flatten()
}
