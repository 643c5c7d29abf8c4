//! A confirmation asked in a native modal `<dialog>`: the browser makes the rest of the page
//! inert, keeps focus inside, closes it on Esc and returns focus to where it was.

use leptos::html;
use leptos::prelude::*;

/// Asks before something that cannot be undone. Cancel has the initial focus, so Enter alone
/// never confirms.
#[component]
pub fn ConfirmDialog(
    /// Whether the dialog is showing.
    #[prop(into)]
    open: Signal<bool>,
    #[prop(into)] title: String,
    #[prop(into)] message: String,
    #[prop(into)] confirm_label: String,
    /// Called whenever the dialog closes (confirmed, cancelled, or Esc).
    on_close: impl Fn() + Send + Sync + 'static,
    /// Called when the user confirms, before `on_close`.
    on_confirm: impl Fn() + Send + Sync + 'static,
) -> impl IntoView {
    let dialog = NodeRef::<html::Dialog>::new();
    let label = title.clone();
    Effect::new(move |_| {
        let Some(el) = dialog.get() else {
            return;
        };
        if open.get() {
            if !el.open() {
                let _ = el.show_modal();
            }
        } else if el.open() {
            el.close();
        }
    });
    view! {
        <dialog node_ref=dialog class="dialog dialog--confirm" aria-label=label
            on:close=move |_| on_close()>
            <form method="dialog" class="form">
                <h2>{title}</h2>
                <p>{message}</p>
                <div class="dialog__buttons">
                    <button class="button button--quiet" value="cancel" autofocus>"Cancel"</button>
                    <button class="button button--danger" value="confirm" on:click=move |_| on_confirm()>
                        {confirm_label}
                    </button>
                </div>
            </form>
        </dialog>
    }
}
