//! Sign-up and log-in pages. Fields are checked with the same domain types the server uses,
//! and errors the server names by field are shown next to that field.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;

use super::SignedIn;
use super::api::{login, signup};
use crate::domain::{DisplayName, Password, Username};
use crate::error::ApiError;

/// Validation message for `field`, from the latest error.
fn field_error(error: Signal<Option<ApiError>>, field: &'static str) -> Signal<Option<String>> {
    Signal::derive(move || {
        error
            .get()
            .filter(|e| e.field() == Some(field))
            .map(|e| e.to_string())
    })
}

/// A labelled input with its error line.
#[component]
fn Field(
    label: &'static str,
    name: &'static str,
    #[prop(default = "text")] kind: &'static str,
    #[prop(default = "off")] autocomplete: &'static str,
    value: RwSignal<String>,
    error: Signal<Option<String>>,
) -> impl IntoView {
    let error_id = format!("{name}-error");
    // No `prop:value`: hydration would set the input to the signal's empty value and wipe what
    // was typed while the page loaded. Instead, what the input holds once it is live seeds the
    // signal, and typing keeps it current.
    let input = NodeRef::<leptos::html::Input>::new();
    Effect::new(move |_| {
        if let Some(input) = input.get() {
            let typed = input.value();
            if !typed.is_empty() {
                value.set(typed);
            }
        }
    });
    view! {
        <label class="field">
            <span class="field__label">{label}</span>
            <input
                class="field__input"
                type=kind
                name=name
                autocomplete=autocomplete
                aria-invalid=move || error.get().is_some().to_string()
                aria-describedby=error_id.clone()
                node_ref=input
                on:input=move |ev| value.set(event_target_value(&ev))
            />
            <span class="field__error" id=error_id role="alert">
                {move || error.get()}
            </span>
        </label>
    }
}

/// Errors that belong to no field, shown above the submit button.
fn form_error(error: Signal<Option<ApiError>>, fields: &'static [&'static str]) -> impl IntoView {
    move || {
        error
            .get()
            .filter(|e| e.field().is_none_or(|f| !fields.contains(&f)))
            .map(|e| view! { <p class="error-banner" role="alert">{e.to_string()}</p> })
    }
}

/// The frame both sign-in pages share: the title, the form with its fields, errors that belong
/// to no field, the submit button (busy while the request runs) and the link to the other page.
#[component]
fn SignInForm(
    title: &'static str,
    /// The names of the form's fields: their errors show beside them, not above the button.
    fields: &'static [&'static str],
    error: Signal<Option<ApiError>>,
    on_submit: Callback<leptos::ev::SubmitEvent>,
    pending: Signal<bool>,
    submit_label: &'static str,
    busy_label: &'static str,
    /// The link to the other page: the question before it, its text and its address.
    other_page: (&'static str, &'static str, &'static str),
    children: Children,
) -> impl IntoView {
    let (question, link_text, href) = other_page;
    view! {
        <main class="page page--narrow">
            <h1>{title}</h1>
            <form class="form" on:submit=move |ev| on_submit.run(ev) novalidate>
                {children()}
                {form_error(error, fields)}
                <button class="button" type="submit" disabled=move || pending.get()>
                    {move || if pending.get() { busy_label } else { submit_label }}
                </button>
            </form>
            <p>{question} <A href=href>{link_text}</A></p>
        </main>
    }
}

/// What both sign-in forms share: the error to show (the form's own check first, then the
/// server's answer) and, once signed in, the move to the home page.
fn sign_in_form<I: Send + Sync + 'static>(
    submit: Action<I, Result<SignedIn, ApiError>>,
) -> (RwSignal<Option<ApiError>>, Signal<Option<ApiError>>) {
    let local_error = RwSignal::new(None::<ApiError>);
    let error = Signal::derive(move || {
        local_error
            .get()
            .or_else(|| submit.value().get().and_then(Result::err))
    });
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(_)) = submit.value().get() {
            navigate("/", Default::default());
        }
    });
    (local_error, error)
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let submit = Action::new(|(username, password): &(String, String)| {
        login(username.clone(), password.clone())
    });
    let (local_error, error) = sign_in_form(submit);
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let checked = Username::parse(&username.get_untracked()).and_then(|name| {
            if password.get_untracked().is_empty() {
                Err(ApiError::invalid("password", "enter your password"))
            } else {
                Ok(name)
            }
        });
        match checked {
            Ok(name) => {
                local_error.set(None);
                submit.dispatch((name.as_str().to_owned(), password.get_untracked()));
            }
            Err(e) => local_error.set(Some(e)),
        }
    };

    view! {
        <SignInForm title="Log in to DealNest Chat" fields=&["username", "password"] error
            on_submit=Callback::new(on_submit) pending=submit.pending().into()
            submit_label="Log in" busy_label="Logging in…"
            other_page=("New here? ", "Create an account", "/signup")>
            <Field label="Username" name="username" autocomplete="username" value=username
                error=field_error(error, "username") />
            <Field label="Password" name="password" kind="password" autocomplete="current-password"
                value=password error=field_error(error, "password") />
        </SignInForm>
    }
}

#[component]
pub fn SignupPage() -> impl IntoView {
    let username = RwSignal::new(String::new());
    let display_name = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let submit = Action::new(
        |(username, display_name, password): &(String, String, String)| {
            signup(username.clone(), display_name.clone(), password.clone())
        },
    );
    let (local_error, error) = sign_in_form(submit);
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let checked = Username::parse(&username.get_untracked()).and_then(|name| {
            DisplayName::parse(&display_name.get_untracked())?;
            Password::parse(&password.get_untracked())?;
            Ok(name)
        });
        match checked {
            Ok(name) => {
                local_error.set(None);
                submit.dispatch((
                    name.as_str().to_owned(),
                    display_name.get_untracked(),
                    password.get_untracked(),
                ));
            }
            Err(e) => local_error.set(Some(e)),
        }
    };

    view! {
        <SignInForm title="Create your DealNest Chat account"
            fields=&["username", "display_name", "password"] error
            on_submit=Callback::new(on_submit) pending=submit.pending().into()
            submit_label="Sign up" busy_label="Creating account…"
            other_page=("Already have an account? ", "Log in", "/login")>
            <Field label="Username" name="username" autocomplete="username" value=username
                error=field_error(error, "username") />
            <Field label="Display name" name="display_name" autocomplete="name" value=display_name
                error=field_error(error, "display_name") />
            <Field label="Password" name="password" kind="password" autocomplete="new-password"
                value=password error=field_error(error, "password") />
        </SignInForm>
    }
}
