//! The runtime arg `deadline=SECONDS`: how long a process may run.

use std::time::Duration;

use nix::errno::Errno;

use crate::Refusal;

/// The runtime arg `deadline=SECONDS`, as given and as a duration.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Deadline {
    text: String,
    pub(crate) limit: Duration,
}

impl Deadline {
    /// The `deadline=` word of the runtime args, if any (the last one counts).
    pub(crate) fn from_args(args: &str) -> Result<Option<Deadline>, Refusal> {
        let Some(text) = args
            .split(|c: char| c.is_whitespace() || c == ',')
            .rev()
            .find_map(|w| w.strip_prefix("deadline="))
        else {
            return Ok(None);
        };
        let bad = || {
            Refusal::new(
                Errno::EINVAL,
                format!(
                    "runtime arg deadline={text}: not a positive number of seconds (at most 1e9)"
                ),
            )
        };
        // Digits and at most one point: no signs, exponents, inf or NaN.
        if text.is_empty()
            || !text.chars().all(|c| c.is_ascii_digit() || c == '.')
            || text.matches('.').count() > 1
        {
            return Err(bad());
        }
        let secs: f64 = text.parse().map_err(|_| bad())?;
        if !(secs > 0.0 && secs <= 1e9) {
            return Err(bad());
        }
        Ok(Some(Deadline {
            text: text.to_string(),
            limit: Duration::from_secs_f64(secs),
        }))
    }

    /// What the process's stderr says when it is stopped.
    pub(crate) fn message(&self) -> String {
        format!(
            "deadline exceeded: still running after {} s (runtime arg deadline={})",
            self.text, self.text
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_takes_positive_seconds_and_refuses_anything_else_in_one_line() {
        assert_eq!(Deadline::from_args("debug").unwrap(), None);
        let d = Deadline::from_args("debug,deadline=1.5").unwrap().unwrap();
        assert_eq!(d.limit, Duration::from_millis(1500));
        // The last one counts, as for the other runtime args read by words.
        let d = Deadline::from_args("deadline=9 deadline=2")
            .unwrap()
            .unwrap();
        assert_eq!(d.limit, Duration::from_secs(2));
        for bad in [
            "",
            "0",
            "0.0",
            "-1",
            "+1",
            "1e3",
            "inf",
            "NaN",
            "1.2.3",
            ".",
            "2s",
            "1e10",
            "10000000000",
        ] {
            let r = Deadline::from_args(&format!("debug deadline={bad}")).unwrap_err();
            assert_eq!(r.errno, Errno::EINVAL, "{bad}");
            assert_eq!(
                r.message,
                format!(
                    "runtime arg deadline={bad}: not a positive number of seconds (at most 1e9)"
                )
            );
        }
    }
}
