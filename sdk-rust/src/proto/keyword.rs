//! A macro for the protocols' closed sets of keywords.

/// Declares a `Copy` enum whose variants are wire keywords, with `name()`,
/// `from_name()` and `ALL`.
macro_rules! keywords {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $word:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in protocol order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The keyword on the wire.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $word,)+
                }
            }

            /// The value spelled `name` on the wire.
            pub fn from_name(name: &[u8]) -> Option<Self> {
                match name {
                    $(n if n == $word.as_bytes() => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

pub(crate) use keywords;
