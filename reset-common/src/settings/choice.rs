//! The fault's choices (STREAM, SELECTION, MODE): each value's spelling in flags, files,
//! reports and messages, and the one parser both binaries use (case and surrounding blanks
//! do not matter).

use core::fmt;

use super::{MODE, SELECTION, STREAM, SettingError, Tunable, UNIT};

/// An enum of named values with its tunable, its spellings and the message for anything else.
macro_rules! choice {
    (
        $(#[$meta:meta])*
        $name:ident for $tunable:ident, expected $expected:literal, fix $fix:literal {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in the order the documentation lists them.
            pub const ALL: &[$name] = &[$($name::$variant),+];
            /// The tunable this is the value of.
            pub const TUNABLE: Tunable = $tunable;

            /// The value's spelling in flags, files and reports.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// Reads a value as a user typed it; anything else is a usage error naming the
            /// tunable.
            pub fn parse(text: &str) -> Result<$name, SettingError> {
                let wanted = text.trim();
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(wanted))
                    .ok_or_else(|| SettingError::invalid($tunable.env, text, $expected, $fix))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

choice! {
    /// Which direction the agent withholds (STREAM).
    Stream for STREAM, expected "downstream or upstream", fix "pass --stream downstream" {
        /// Forward the request, withhold the response (the default, as Toxiproxy's).
        Downstream = "downstream",
        /// Withhold the request: the service never sees it.
        Upstream = "upstream",
    }
}

choice! {
    /// How flows are picked (SELECTION).
    Selection for SELECTION, expected "random or exact", fix "pass --selection random" {
        /// Each flow with probability TOXICITY.
        Random = "random",
        /// Exactly floor(n * TOXICITY) of n flows, evenly spread.
        Exact = "exact",
    }
}

choice! {
    /// The agent's data path (MODE).
    Mode for MODE, expected "auto, kernel or userspace", fix "pass --mode auto" {
        /// Kernel when the eBPF programs load, else userspace.
        Auto = "auto",
        /// eBPF selection and observation.
        Kernel = "kernel",
        /// Selection in the agent's proxy.
        Userspace = "userspace",
    }
}

choice! {
    /// What TOXICITY is a share of (UNIT).
    Unit for UNIT, expected "request or connection", fix "pass --unit request" {
        /// Every HTTP/1.x request, on new and on persistent connections (the default).
        Request = "request",
        /// Every new connection, decided at its SYN.
        Connection = "connection",
    }
}
