//! "Seen by …" under the latest message.

use leptos::prelude::*;

use crate::realtime::browser::ChatClient;

/// Who (other than the sender and me) has read up to `seq`: names for a few, a count for many.
#[component]
pub fn SeenBy(channel_id: i64, seq: i64, sender_id: i64) -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let me = chat.my_id();
    let text = move || {
        let names: Vec<String> = chat.with_detail(channel_id, |detail| {
            detail
                .map(|detail| {
                    detail
                        .members
                        .iter()
                        .filter(|m| m.user.id != sender_id && m.user.id != me)
                        .filter(|m| m.last_read_seq >= seq)
                        .map(|m| m.user.display_name.clone())
                        .collect()
                })
                .unwrap_or_default()
        });
        match names.len() {
            0 => None,
            1..=3 => Some(format!("Seen by {}", names.join(", "))),
            n => Some(format!("Seen by {n} people")),
        }
    };
    view! {
        {move || text().map(|text| view! { <p class="seen-by" data-testid="seen-by">{text}</p> })}
    }
}
