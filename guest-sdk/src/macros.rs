//! The export macros. Each expands, on `wasm32` only, to an implementation of
//! the generated `Guest` trait that forwards to your trait implementation, and
//! to wit-bindgen's export glue. Natively they expand to nothing, so plugin
//! crates build and unit-test as ordinary libraries.
//!
//! Each world's function returns `result<_, string>` in WIT; a Rust plugin's
//! trait method always answers (a panic is a trap), so the glue answers `Ok`.

/// Exports a [`Resolver`](crate::Resolver) implementation as the component's
/// `resolver` world. Invoke once, at the crate root of a plugin crate.
#[macro_export]
macro_rules! export_resolver {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static STATE: ::std::cell::RefCell<Option<$ty>> =
                    const { ::std::cell::RefCell::new(None) };
            }
            struct Export;
            impl $crate::bindings::resolver::Guest for Export {
                fn configure(config: String) -> Result<(), String> {
                    $crate::__export::resolver_configure::<$ty>(&STATE, &config)
                }
                fn resolve(
                    current: $crate::bindings::types::Version,
                    incoming: $crate::bindings::types::Change,
                ) -> Result<$crate::bindings::types::Resolution, String> {
                    Ok($crate::__export::resolver_resolve::<$ty>(
                        &STATE, current, incoming,
                    ))
                }
            }
    $crate::bindings::resolver::export!(Export with_types_in $crate::bindings::resolver);
        };
    };
}

/// Exports a [`Filter`](crate::Filter) implementation as the component's
/// `filter` world. Invoke once, at the crate root of a plugin crate.
#[macro_export]
macro_rules! export_filter {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static STATE: ::std::cell::RefCell<Option<$ty>> =
                    const { ::std::cell::RefCell::new(None) };
            }
            struct Export;
            impl $crate::bindings::filter::Guest for Export {
                fn configure(config: String) -> Result<(), String> {
                    $crate::__export::filter_configure::<$ty>(&STATE, &config)
                }
                fn filter(
                    direction: $crate::bindings::types::Direction,
                    change: $crate::bindings::types::Change,
                ) -> Result<$crate::bindings::types::Verdict, String> {
                    Ok($crate::__export::filter_filter::<$ty>(
                        &STATE, direction, change,
                    ))
                }
            }
    $crate::bindings::filter::export!(Export with_types_in $crate::bindings::filter);
        };
    };
}

/// Exports a [`SnapshotPolicy`](crate::SnapshotPolicy) implementation as the
/// component's `snapshot-policy` world. Invoke once, at the crate root.
#[macro_export]
macro_rules! export_snapshot_policy {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static STATE: ::std::cell::RefCell<Option<$ty>> =
                    const { ::std::cell::RefCell::new(None) };
            }
            struct Export;
            impl $crate::bindings::snapshot_policy::Guest for Export {
                fn configure(config: String) -> Result<(), String> {
                    $crate::__export::snapshot_configure::<$ty>(&STATE, &config)
                }
                fn decide(
                    stats: $crate::bindings::types::Stats,
                ) -> Result<$crate::bindings::types::Decision, String> {
                    Ok($crate::__export::snapshot_decide::<$ty>(&STATE, stats))
                }
            }
            $crate::bindings::snapshot_policy::export!(
                Export with_types_in $crate::bindings::snapshot_policy
            );
        };
    };
}
