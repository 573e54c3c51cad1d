//! Colour for people, never for pipes: ANSI colour only when standard output is a terminal, `NO_COLOR`
//! is unset or empty (<https://no-color.org>) and `TERM` is not `dumb`. It owns that decision and
//! the few styles the CLI uses; it must not decide what a command prints.

use std::io::IsTerminal;

/// A style for a word or a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Something that worked.
    Good,
    /// Something to look at.
    Warn,
    /// Something that failed or was refused.
    Bad,
    /// Less important detail.
    Dim,
}

/// Whether this process colours its standard output.
pub fn enabled() -> bool {
    wanted(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
    )
}

fn wanted(
    terminal: bool,
    no_color: Option<&std::ffi::OsStr>,
    term: Option<&std::ffi::OsStr>,
) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty()) && term.is_none_or(|t| t != "dumb")
}

/// `text` in `style` when `on`, else as it is.
pub fn paint(on: bool, style: Style, text: &str) -> String {
    if !on {
        return text.to_string();
    }
    let code = match style {
        Style::Good => "32",
        Style::Warn => "33",
        Style::Bad => "31",
        Style::Dim => "2",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn no_color_a_pipe_or_a_dumb_terminal_turn_colour_off() {
        assert!(wanted(true, None, Some(OsStr::new("xterm-256color"))));
        assert!(!wanted(false, None, None), "a pipe");
        assert!(!wanted(true, Some(OsStr::new("1")), None), "NO_COLOR set");
        assert!(
            wanted(true, Some(OsStr::new("")), None),
            "NO_COLOR empty counts as unset"
        );
        assert!(!wanted(true, None, Some(OsStr::new("dumb"))));
        assert_eq!(paint(false, Style::Bad, "refused"), "refused");
        assert_eq!(paint(true, Style::Bad, "refused"), "\x1b[31mrefused\x1b[0m");
    }
}
