//! The wire types both sides share. This module imports nothing from the server or the pages
//! (tests/layers.rs checks it); the server functions sit beside their pages.

/// Spells a state enum once: its variants, their names on the wire and in the state database,
/// and the list of all of them (the test of the migration's CHECK reads it).
macro_rules! state_names {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod adoption;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod autopilot;
pub mod check;
pub mod codec;
pub mod notify;
pub mod numbers;
pub mod overview;
pub mod patients;
pub mod records;
pub mod rehearsal;
pub mod reports;
pub mod rollback;
pub mod rollout;
pub mod status;
pub mod versions;
pub mod window;

pub use status::*;
